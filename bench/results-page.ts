/**
 * bench/RESULTS.md and its charts (bench/charts/*.svg), rendered from a results file in
 * the shape of BENCH-FORMAT.md: which targets of issue 5 are met, with the figures; charts
 * of the ratios, of throughput against concurrency, of latency percentiles, of the
 * machine's limit, of key generation against members and of RSS over the soak; and every
 * id not produced yet marked "not measured yet".
 *
 * Everything here is a pure function of the file (plus optional notes and settings of the
 * run that made it), so `npm run bench -- --report` can re-render the page from
 * bench/results/latest.json, and tests can check it without measuring anything.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { barChart, formatValue, lineChart, panels, type Panel } from './charts.js';
import type { BenchResult, ResultNote } from './harness.js';
import type { BenchFile } from './report.js';

/** A goal from issue 5 (or an earlier issue), judged on an entry's ratio or value. */
export interface Target {
  /** The id it applies to. */
  readonly id: string;
  readonly on: 'ratio' | 'value';
  readonly cmp: '>=' | '<=' | '<';
  readonly threshold: number;
  /** Where it comes from. */
  readonly source: 'issue 5' | 'virtual slot issue';
}

/** The targets RESULTS.md reports on, in order. */
export const TARGETS: readonly Target[] = [
  { id: 'overhead/ecdsa-p256-sign/c16', on: 'ratio', cmp: '>=', threshold: 1.3, source: 'issue 5' },
  { id: 'overhead/rsa2048-sign/c16', on: 'ratio', cmp: '>=', threshold: 1.0, source: 'issue 5' },
  { id: 'overhead/aes-gcm-1k/c16', on: 'ratio', cmp: '>=', threshold: 0.9, source: 'issue 5' },
  { id: 'overhead/hmac-sha256-1k/c16', on: 'ratio', cmp: '>=', threshold: 0.8, source: 'issue 5' },
  { id: 'limit/rsa2048-sign/hosts2', on: 'ratio', cmp: '>=', threshold: 0.85, source: 'issue 5' },
  ...[1, 2, 4, 8, 16].map((m): Target => ({ id: `emulated/members${m}`, on: 'ratio', cmp: '>=', threshold: 0.95, source: 'issue 5' })),
  { id: 'soak/rss-growth', on: 'value', cmp: '<', threshold: 5, source: 'issue 5' },
  { id: 'keygen/ec-p256/members3', on: 'ratio', cmp: '<=', threshold: 1.5, source: 'virtual slot issue' },
  { id: 'keygen/rsa2048/members3', on: 'ratio', cmp: '<=', threshold: 1.5, source: 'virtual slot issue' },
];

/** Ids issue 5 asks for that need parts not built yet (member host processes), with what they need. */
export const PENDING: readonly { readonly pattern: string; readonly ids: readonly string[]; readonly needs: string }[] = [
  { pattern: 'limit/<op>/hosts<n>', ids: ['limit/rsa2048-sign/hosts2'], needs: 'the virtual slot over member host processes' },
  { pattern: 'emulated/members<n>', ids: [1, 2, 4, 8, 16].map((m) => `emulated/members${m}`), needs: 'the member host option for emulated device capacity' },
  { pattern: 'failover/kill, failover/hang', ids: ['failover/kill', 'failover/hang'], needs: 'member host processes and failover by deadline and heartbeat' },
  { pattern: 'hetero/<strategy>/p99', ids: ['hetero/least-busy/p99', 'hetero/peak-ewma/p99'], needs: 'a pool with one slow member (member hosts or emulation)' },
];

/** How a target stands in a results file. */
export type TargetStatus = 'met' | 'missed' | 'not measured yet' | 'not judged (quick soak)';

/** Judges one target against the results. */
export function judge(target: Target, results: readonly BenchResult[]): { status: TargetStatus; figure?: number; entry?: BenchResult } {
  const e = results.find((r) => r.id === target.id);
  if (e === undefined) return { status: 'not measured yet' };
  const figure = target.on === 'ratio' ? e.ratio : e.value;
  if (target.id.startsWith('soak/') && e['quickSoak'] === true) return { status: 'not judged (quick soak)', figure, entry: e };
  const met = target.cmp === '>=' ? figure >= target.threshold : target.cmp === '<=' ? figure <= target.threshold : figure < target.threshold;
  return { status: met ? 'met' : 'missed', figure, entry: e };
}

/** `overhead/aes-gcm-1k/c16` -> ['overhead', 'aes-gcm-1k', 'c16']. */
const parts = (id: string): string[] => id.split('/');

const OPS_ORDER = ['aes-gcm-1k', 'hmac-sha256-1k', 'ecdsa-p256-sign', 'rsa2048-sign', 'ec-p256-keygen'];
const byOpOrder = (a: string, b: string): number => (OPS_ORDER.indexOf(a) + 1 || 99) - (OPS_ORDER.indexOf(b) + 1 || 99);

/** The default-configuration overhead entries, by op then concurrency. */
function overheadCells(results: readonly BenchResult[]): Map<string, Map<number, BenchResult>> {
  const out = new Map<string, Map<number, BenchResult>>();
  for (const r of results) {
    const [family, op, c, extra] = parts(r.id);
    if (family !== 'overhead' || op === undefined || extra !== undefined || !/^c\d+$/.test(c ?? '')) continue;
    const k = Number(c!.slice(1));
    if (!out.has(op)) out.set(op, new Map());
    out.get(op)!.set(k, r);
  }
  return new Map([...out].sort(([a], [b]) => byOpOrder(a, b)));
}

const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN);
/** `×1.3`, `×24`: a ratio as a label. */
const times = (ratio: number): string => (!Number.isFinite(ratio) ? '' : ratio >= 9.95 ? `×${ratio.toFixed(0)}` : `×${ratio.toFixed(1)}`);
const msFormat = (v: number): string => (!Number.isFinite(v) ? '–' : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3));

/** One chart file: its name under charts/ and its SVG text. */
export interface Chart {
  readonly file: string;
  readonly alt: string;
  readonly svg: string;
}

/** Every chart the results allow, keyed by section. */
export function charts(file: BenchFile): Map<'overhead' | 'throughput' | 'latency' | 'limit' | 'keygen' | 'soak', Chart> {
  const out = new Map<'overhead' | 'throughput' | 'latency' | 'limit' | 'keygen' | 'soak', Chart>();
  const when = `${file.date}${file.quick ? ', quick run' : ''}`;
  const cells = overheadCells(file.results);
  const concurrencies = [...new Set([...cells.values()].flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);

  if (cells.size > 0) {
    const targetOf = (id: string): number | undefined => TARGETS.find((t) => t.id === id && t.on === 'ratio')?.threshold;
    out.set('overhead', {
      file: 'overhead-ratio.svg',
      alt: 'Throughput of the virtual slot as a ratio of pkcs11js directly, per operation and concurrency',
      svg: barChart({
        title: 'Virtual slot (1 member) ÷ pkcs11js directly, throughput',
        subtitle: `higher is better; 1.0 = as fast as the better of pkcs11js sync and async; black ticks: targets (${when})`,
        yLabel: 'ratio (ops/s ÷ baseline ops/s)',
        series: concurrencies.map((k) => ({ name: `${k} caller${k === 1 ? '' : 's'}` })),
        groups: [...cells].map(([op, m]) => ({
          label: op,
          bars: concurrencies.map((k) => {
            const r = m.get(k);
            return { series: `${k} caller${k === 1 ? '' : 's'}`, value: r?.ratio ?? Number.NaN, label: r === undefined ? undefined : r.ratio.toFixed(2), target: r === undefined ? undefined : targetOf(r.id) };
          }),
        })),
        refLines: [{ value: 1, label: '1.0 = pkcs11js directly', color: '#555' }],
        format: (v) => v.toFixed(2),
      }),
    });

    out.set('throughput', {
      file: 'throughput-concurrency.svg',
      alt: 'Operations per second against concurrent callers, virtual slot and pkcs11js directly',
      svg: panels(
        'Throughput against concurrency',
        `ops/s at 1, 16 and 64 concurrent callers; ratio to pkcs11js directly in the labels (${when})`,
        [...cells].map(([op, m]): Panel => ({
          kind: 'line',
          title: op,
          xLabel: 'concurrent callers',
          yLabel: 'ops/s',
          categories: concurrencies.map(String),
          labelPoints: false,
          series: [
            { name: 'pkcs11js directly', color: '#9c755f', points: concurrencies.map((k, i) => ({ x: i, y: m.get(k)?.baseline ?? Number.NaN })) },
            { name: 'virtual slot', color: '#4e79a7', points: concurrencies.map((k, i) => ({ x: i, y: m.get(k)?.value ?? Number.NaN })) },
          ],
          xMarkers: concurrencies.map((k, i) => ({ x: i, label: m.get(k) === undefined ? '' : `×${m.get(k)!.ratio.toFixed(2)}` })),
        })),
        { columns: 3 },
      ),
    });

    out.set('latency', {
      file: 'latency-percentiles.svg',
      alt: 'p50 and p99 latency of one operation, virtual slot and pkcs11js directly with as many operations in flight',
      svg: panels(
        'Latency of one operation: p50 and p99',
        `ms, lower is better; direct = pkcs11js with as many in flight; labels: virtual slot ÷ direct (${when})`,
        [...cells].map(([op, m]): Panel => ({
          kind: 'bar',
          title: op,
          yLabel: 'ms',
          series: [{ name: 'p50 direct', color: '#bab0ac' }, { name: 'p50 slot', color: '#4e79a7' }, { name: 'p99 direct', color: '#9c755f' }, { name: 'p99 slot', color: '#e15759' }],
          groups: concurrencies.map((k) => {
            const r = m.get(k);
            const direct50 = num(r?.['directP50Ms'] ?? r?.['baselineP50Ms']);
            const direct99 = num(r?.['directP99Ms'] ?? r?.['baselineP99Ms']);
            return {
              label: `${k} in flight`,
              bars: [
                { series: 'p50 direct', value: direct50, label: '' },
                { series: 'p50 slot', value: num(r?.['p50Ms']), label: times(num(r?.['p50Ms']) / direct50) },
                { series: 'p99 direct', value: direct99, label: '' },
                { series: 'p99 slot', value: num(r?.['p99Ms']), label: times(num(r?.['p99Ms']) / direct99) },
              ],
            };
          }),
          format: msFormat,
        })),
        { columns: 3, panelWidth: 340, panelHeight: 290 },
      ),
    });
  }

  const limits = file.results.filter((r) => r.id.startsWith('limit/'));
  if (limits.length > 0) {
    const ops = [...new Set(limits.map((r) => parts(r.id)[1]!))].sort(byOpOrder);
    const kinds = [...new Set(limits.map((r) => parts(r.id)[2]!).filter((k) => k !== 'baseline'))].sort();
    const series = [{ name: 'one process', color: '#bab0ac' }, { name: 'limit (1 process per core)', color: '#9c755f' }, ...kinds.map((k) => ({ name: `virtual slot, ${k}` }))];
    out.set('limit', {
      file: 'machine-limit.svg',
      alt: "Throughput as a fraction of the machine's limit (one process per core, pkcs11js directly)",
      svg: barChart({
        title: "Throughput as a fraction of the machine's limit",
        subtitle: `1.0 = one process per core, each with pkcs11js sync calls on its own token, all at once (${when})`,
        yLabel: 'ratio to the limit',
        series,
        groups: ops.map((op) => {
          const base = limits.find((r) => r.id === `limit/${op}/baseline`);
          return {
            label: op,
            bars: [
              { series: 'one process', value: base === undefined ? Number.NaN : 1 / base.ratio, label: base === undefined ? '' : `${(1 / base.ratio).toFixed(2)}` },
              { series: 'limit (1 process per core)', value: base === undefined ? Number.NaN : 1, label: base === undefined ? '' : `1.00 = ${formatValue(base.value)}/s` },
              ...kinds.map((k) => {
                const r = limits.find((x) => x.id === `limit/${op}/${k}`);
                return { series: `virtual slot, ${k}`, value: r?.ratio ?? Number.NaN, target: TARGETS.find((t) => t.id === `limit/${op}/${k}`)?.threshold };
              }),
            ],
          };
        }),
        format: (v) => v.toFixed(2),
      }),
    });
  }

  const keygens = file.results.filter((r) => r.id.startsWith('keygen/'));
  if (keygens.length > 0) {
    const kinds = [...new Set(keygens.map((r) => parts(r.id)[1]!))];
    const members = [...new Set(keygens.map((r) => Number(parts(r.id)[2]!.replace('members', ''))))].sort((a, b) => a - b);
    out.set('keygen', {
      file: 'keygen-members.svg',
      alt: 'Key generation latency through n members as a ratio of one member',
      svg: lineChart({
        title: 'Token key generation: latency with n members ÷ with 1',
        subtitle: `median latency, lower is better; the key is replicated to every member before the call returns (${when})`,
        xLabel: 'members',
        yLabel: 'latency ratio to 1 member',
        categories: members.map(String),
        labelPoints: true,
        series: kinds.map((k) => ({ name: k, points: members.map((m, i) => ({ x: i, y: keygens.find((r) => r.id === `keygen/${k}/members${m}`)?.ratio ?? Number.NaN })) })),
        refLines: [{ value: 1.5, label: 'target <= 1.5 (EC, RSA at 3 members)' }],
        format: (v) => v.toFixed(2),
      }),
    });
  }

  const soak = file.results.find((r) => r.id === 'soak/rss-growth');
  const rss = soak?.['rssMiB'];
  if (soak !== undefined && Array.isArray(rss) && rss.length > 1) {
    const values = rss.map(Number);
    const duration = num(soak['durationS']);
    const step = duration / values.length;
    out.set('soak', {
      file: 'soak-rss.svg',
      alt: 'Resident set size over the soak',
      svg: lineChart({
        title: `RSS over the ${soak['quickSoak'] === true ? 'QUICK ' : ''}soak: ${soak.value >= 0 ? '+' : ''}${soak.value.toFixed(2)} % from the first to the last quarter`,
        subtitle: `${num(soak['operations']).toLocaleString('en-US')} operations in ${duration.toFixed(0)} s (${when})`,
        xLabel: 'seconds',
        yLabel: 'RSS (MiB)',
        yFromZero: false,
        series: [{ name: 'RSS (MiB)', points: values.map((v, i) => ({ x: (i + 0.5) * step, y: v })) }],
        xMarkers: [
          { x: duration / 4, label: 'first quarter ends' },
          { x: (3 * duration) / 4, label: 'last quarter starts' },
        ],
        format: (v) => v.toFixed(1),
      }),
    });
  }
  return out;
}

function fmt(value: number, unit: string): string {
  if (!Number.isFinite(value)) return '–';
  if (unit === 'ops/s') return `${Math.round(value).toLocaleString('en-US')} ops/s`;
  if (unit === 'ms') return `${msFormat(value)} ms`;
  return `${value.toFixed(2)} ${unit}`;
}

/** A Markdown table; the columns in `right` are right-aligned (numbers). */
function table(header: readonly string[], rows: readonly (readonly string[])[], right: readonly number[] = []): string {
  const rule = header.map((_, i) => (right.includes(i) ? '---:' : '---'));
  return [header, rule, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

/** Options of {@link renderResultsPage}. */
export interface PageOptions {
  /** Per-id details of the run (spreads, chosen baselines), when rendered right after it. */
  readonly notes?: readonly ResultNote[];
  /** The run's settings and load, when known. */
  readonly settings?: string;
  /** Directory of the charts relative to RESULTS.md. @default 'charts' */
  readonly chartsDir?: string;
}

/** RESULTS.md as text, and the charts it references. */
export function renderResultsPage(file: BenchFile, options: PageOptions = {}): { markdown: string; charts: Chart[] } {
  const dir = options.chartsDir ?? 'charts';
  const figures = charts(file);
  const notes = new Map((options.notes ?? []).map((n) => [n.id, n.note]));
  const img = (key: Parameters<typeof figures.get>[0]): string => {
    const c = figures.get(key);
    return c === undefined ? '' : `![${c.alt}](${dir}/${c.file})\n`;
  };
  const m = file.machine;
  const lines: string[] = [];
  lines.push('# Benchmark results', '');
  lines.push(
    `Run of ${file.date}${file.quick ? ' — **quick mode** (fewer, shorter repetitions; the soak is a short one)' : ' — full mode'}, ` +
      `on ${m.cpus} x ${m.cpuModel}, Node ${m.node}, SoftHSM ${m.softhsm}.` + (options.settings === undefined ? '' : ` Settings: ${options.settings}.`),
    '',
    'Regenerated by `npm run bench` (from bench/results/latest.json; `npm run bench -- --report` re-renders this page ' +
      'from that file without measuring). Every figure is a ratio against a baseline measured in the same run, interleaved ' +
      'with it, so that machine noise hits both alike; medians over the repetitions. On a shared or busy machine the ' +
      'figures move by 10-50 % between runs: compare runs made on a quiet machine.',
    '',
  );

  lines.push('## Targets', '');
  lines.push(
    table(
      ['id', 'target', 'figure', 'status', 'from'],
      TARGETS.map((t) => {
        const j = judge(t, file.results);
        const what = t.on === 'ratio' ? 'ratio' : t.id.startsWith('soak/') ? 'growth %' : 'value';
        const figure = j.figure === undefined ? '–' : t.on === 'ratio' ? j.figure.toFixed(3) : `${j.figure.toFixed(2)}`;
        const status = j.status === 'met' ? '**met**' : j.status === 'missed' ? '**missed**' : j.status;
        return [`\`${t.id}\``, `${what} ${t.cmp} ${t.threshold}`, figure, status, t.source];
      }),
      [2],
    ),
    '',
  );

  const cells = overheadCells(file.results);
  lines.push('## Overhead: the virtual slot with one member vs pkcs11js directly', '');
  if (cells.size === 0) lines.push('Not measured in this run.', '');
  else {
    lines.push(
      'One in-process member (worker threads, default configuration) against pkcs11js on the same token with the same token keys, ' +
        'the better of its sync loop and async calls at the same concurrency. `ec-p256-keygen` generates and destroys an EC P-256 session key pair.',
      '',
      img('overhead'),
      img('throughput'),
      img('latency'),
    );
    const rows: string[][] = [];
    for (const [op, byK] of cells) {
      for (const [k, r] of [...byK].sort(([a], [b]) => a - b)) {
        rows.push([
          op,
          String(k),
          fmt(r.value, r.unit),
          fmt(r.baseline, r.unit),
          r.ratio.toFixed(3),
          `${msFormat(num(r['p50Ms']))} / ${msFormat(num(r['directP50Ms'] ?? r['baselineP50Ms']))}`,
          `${msFormat(num(r['p99Ms']))} / ${msFormat(num(r['directP99Ms'] ?? r['baselineP99Ms']))}`,
          notes.get(r.id) ?? '',
        ]);
      }
    }
    lines.push(
      table(['operation', 'callers', 'virtual slot', 'pkcs11js directly', 'ratio', 'p50 ms slot / direct', 'p99 ms slot / direct', 'notes'], rows, [1, 2, 3, 4, 5, 6]),
      '',
      'Latencies: "direct" is pkcs11js with as many operations in flight (1 caller: the baseline; 16 and 64: its async calls), ' +
        'since with k callers latency grows with k / throughput on either side; the JSON also has the chosen baseline\'s own latencies (baselineP50Ms, baselineP99Ms).',
      '',
    );
  }

  lines.push("## The machine's limit", '');
  const limits = file.results.filter((r) => r.id.startsWith('limit/'));
  if (limits.length === 0) lines.push('Not measured in this run.', '');
  else {
    lines.push(
      "One process per core, each using pkcs11js directly (sync calls) on its own SoftHSM token, all at once: the most this machine does. " +
        '`limit/<op>/baseline` is their sum against one such process alone (the ratio is how well the machine scales); ' +
        '`limit/<op>/hosts<n>` (the virtual slot over n member host processes) will be measured against this sum.',
      '',
      img('limit'),
      table(
        ['id', 'value', 'baseline', 'ratio', 'p50 / p99 ms', 'per process', 'notes'],
        limits.map((r) => [
          `\`${r.id}\``,
          fmt(r.value, r.unit),
          fmt(r.baseline, r.unit),
          r.ratio.toFixed(3),
          `${msFormat(num(r['p50Ms']))} / ${msFormat(num(r['p99Ms']))}`,
          Array.isArray(r['perProcess']) ? (r['perProcess'] as unknown[]).map((v) => formatValue(Number(v))).join(' + ') : '',
          notes.get(r.id) ?? '',
        ]),
        [1, 2, 3, 4, 5],
      ),
      '',
    );
  }

  lines.push('## Key generation through n members', '');
  const keygens = file.results.filter((r) => r.id.startsWith('keygen/'));
  if (keygens.length === 0) lines.push('Not measured in this run.', '');
  else {
    lines.push(
      'Token keys generated through the virtual slot with n members (replicated to all before the call returns) against 1 member, median latency.',
      '',
      img('keygen'),
      table(
        ['id', 'median', '1 member', 'ratio', 'p99 ms (n / 1)', 'notes'],
        keygens.map((r) => [`\`${r.id}\``, fmt(r.value, r.unit), fmt(r.baseline, r.unit), r.ratio.toFixed(3), `${msFormat(num(r['p99Ms']))} / ${msFormat(num(r['baselineP99Ms']))}`, notes.get(r.id) ?? '']),
        [1, 2, 3, 4],
      ),
      '',
    );
  }

  lines.push('## Soak', '');
  const soak = file.results.find((r) => r.id === 'soak/rss-growth');
  if (soak === undefined) lines.push('Not measured in this run.', '');
  else {
    const quickSoak = soak['quickSoak'] === true;
    lines.push(
      (quickSoak
        ? `**Quick soak** (${num(soak['durationS']).toFixed(0)} s): too short to judge the target, which needs the full run's soak of at least 2 minutes and a million operations. `
        : '') +
        `RSS of the process while two in-process members serve 16 callers (HMAC, AES-GCM, ECDSA, and an EC key pair made and destroyed every 500th operation): ` +
        `${num(soak['firstQuarterMiB']).toFixed(1)} MiB in the first quarter, ${num(soak['lastQuarterMiB']).toFixed(1)} MiB in the last, ` +
        `**${soak.value.toFixed(2)} %** growth, over ${num(soak['operations']).toLocaleString('en-US')} operations in ${num(soak['durationS']).toFixed(0)} s ` +
        `(${num(soak['errors'])} errors). In the JSON: value = growth %, baseline = 100 (the first quarter), ratio = growth as a fraction.`,
      '',
      img('soak'),
    );
  }

  lines.push('## Not measured yet', '');
  lines.push(
    table(
      ['ids', 'status', 'needs'],
      PENDING.map((p) => {
        const have = p.ids.filter((id) => file.results.some((r) => r.id === id || r.id.startsWith(`${id}/`)));
        return [`\`${p.pattern}\``, have.length === 0 ? 'not measured yet' : `measured: ${have.join(', ')}`, p.needs];
      }),
    ),
    '',
  );

  lines.push('## Every entry', '');
  lines.push(
    table(
      ['id', 'unit', 'value', 'baseline', 'ratio'],
      file.results.map((r) => [`\`${r.id}\``, r.unit, formatValue(r.value), formatValue(r.baseline), r.ratio.toFixed(3)]),
      [2, 3, 4],
    ),
    '',
  );
  return { markdown: lines.join('\n'), charts: [...figures.values()] };
}

/** The chart files this module may write (others under charts/ are left alone). */
const CHART_FILES = ['overhead-ratio.svg', 'throughput-concurrency.svg', 'latency-percentiles.svg', 'machine-limit.svg', 'keygen-members.svg', 'soak-rss.svg'];

/**
 * Writes `<benchDir>/RESULTS.md` and its charts under `<benchDir>/charts/`; removes a chart
 * of ours that this file has no data for (so the page never shows a stale figure).
 */
export async function writeResultsPage(benchDir: string, file: BenchFile, options: PageOptions = {}): Promise<string[]> {
  const { markdown, charts: made } = renderResultsPage(file, options);
  const chartsDir = join(benchDir, options.chartsDir ?? 'charts');
  await mkdir(chartsDir, { recursive: true });
  for (const c of made) await writeFile(join(chartsDir, c.file), c.svg);
  const existing = await readdir(chartsDir);
  for (const f of existing) if (CHART_FILES.includes(f) && !made.some((c) => c.file === f)) await rm(join(chartsDir, f));
  await writeFile(join(benchDir, 'RESULTS.md'), markdown);
  return made.map((c) => c.file);
}
