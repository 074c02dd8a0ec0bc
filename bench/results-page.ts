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
import { barChart, formatValue, lineChart, panels, type Panel, type XMarker } from './charts.js';
import type { BenchResult, ResultNote } from './harness.js';
import type { BenchFile } from './report.js';

/** A goal from issue 4 or 5 (or an earlier issue), judged on an entry's ratio, value or one of its extra fields. */
export interface Target {
  /** The id it applies to. */
  readonly id: string;
  /** What is compared: the ratio, the value, or the extra field named by `field`. */
  readonly on: 'ratio' | 'value' | 'field';
  /** The extra field, when `on` is 'field' (e.g. `errors`). */
  readonly field?: string;
  readonly cmp: '>=' | '<=' | '<' | '==';
  readonly threshold: number;
  /** How the target column names the figure, when not `ratio` / `value`. */
  readonly label?: string;
  /** Where it comes from. */
  readonly source: 'issue 4' | 'issue 5' | 'issue 12' | 'issue 13' | 'issue 14' | 'issue 17' | 'virtual slot issue';
}

/**
 * How the scheduler comparison is judged (issue 5: the better strategy becomes the
 * recommended default only if it keeps the reference's behaviour under equal load).
 * Peak-EWMA is clearly better on p99 when its p99 in the pool with one slow member is
 * below `clearlyBetter` x least-busy's; it keeps the reference behaviour (least-busy
 * round-robin) under equal load when, over 3 equal members, its throughput is at least
 * `equalMinRatio` x least-busy's, its p99 at most `equalMaxP99Ratio` x least-busy's, and
 * no member's share of the operations is further than `maxShareDeviation` from 1/3.
 * These margins are this benchmark's, chosen to stay above run-to-run noise.
 */
export const SCHEDULER_RULES = { clearlyBetter: 0.9, equalMinRatio: 0.95, equalMaxP99Ratio: 1.2, maxShareDeviation: 0.05 } as const;

/** The failover target (issue 4): throughput back to 2/3 within this many ms of a kill. */
export const FAILOVER_TARGET_MS = 1000;

/** The targets RESULTS.md reports on, in order. */
export const TARGETS: readonly Target[] = [
  { id: 'overhead/ecdsa-p256-sign/c16', on: 'ratio', cmp: '>=', threshold: 1.3, source: 'issue 5' },
  { id: 'overhead/rsa2048-sign/c16', on: 'ratio', cmp: '>=', threshold: 1.0, source: 'issue 5' },
  { id: 'overhead/aes-gcm-1k/c16', on: 'ratio', cmp: '>=', threshold: 0.9, source: 'issue 5' },
  { id: 'overhead/hmac-sha256-1k/c16', on: 'ratio', cmp: '>=', threshold: 0.8, source: 'issue 5' },
  { id: 'limit/rsa2048-sign/hosts2', on: 'ratio', cmp: '>=', threshold: 0.85, source: 'issue 5' },
  ...[1, 2, 4, 8, 16].map((m): Target => ({ id: `emulated/members${m}`, on: 'ratio', cmp: '>=', threshold: 0.95, source: 'issue 5' })),
  { id: 'soak/rss-growth', on: 'value', cmp: '<', threshold: 5, source: 'issue 5' },
  { id: 'failover/kill', on: 'value', cmp: '<=', threshold: FAILOVER_TARGET_MS, label: 'ms back to 2/3', source: 'issue 4' },
  { id: 'failover/kill', on: 'field', field: 'errors', cmp: '==', threshold: 0, label: 'errors', source: 'issue 4' },
  { id: 'failover/hang', on: 'field', field: 'errors', cmp: '==', threshold: 0, label: 'errors', source: 'issue 4' },
  { id: 'hetero/peak-ewma/p99', on: 'ratio', cmp: '<', threshold: SCHEDULER_RULES.clearlyBetter, label: 'p99 ratio to least-busy', source: 'issue 5' },
  { id: 'hetero/peak-ewma/equal-load', on: 'ratio', cmp: '>=', threshold: SCHEDULER_RULES.equalMinRatio, label: 'throughput ratio to least-busy', source: 'issue 5' },
  { id: 'hetero/peak-ewma/equal-load', on: 'field', field: 'p99Ratio', cmp: '<=', threshold: SCHEDULER_RULES.equalMaxP99Ratio, label: 'p99 ratio to least-busy', source: 'issue 5' },
  { id: 'hetero/peak-ewma/equal-load', on: 'field', field: 'maxShareDeviation', cmp: '<=', threshold: SCHEDULER_RULES.maxShareDeviation, label: 'largest share - 1/3', source: 'issue 5' },
  { id: 'keygen/ec-p256/members3', on: 'ratio', cmp: '<=', threshold: 1.5, source: 'virtual slot issue' },
  { id: 'keygen/rsa2048/members3', on: 'ratio', cmp: '<=', threshold: 1.5, source: 'virtual slot issue' },
  { id: 'overhead/ec-p256-keygen/c16', on: 'ratio', cmp: '>=', threshold: 0.8, source: 'issue 12' },
  { id: 'multipart/sha256-1m/c1', on: 'ratio', cmp: '>=', threshold: 0.9, source: 'issue 13' },
  { id: 'multipart/sha256-1m/c16', on: 'ratio', cmp: '>=', threshold: 0.9, source: 'issue 13' },
  { id: 'multipart/aes-cbc-1m/c16', on: 'ratio', cmp: '>=', threshold: 0.9, source: 'issue 13' },
  { id: 'facade/ecdsa-p256-sign/sync-c1', on: 'ratio', cmp: '>=', threshold: 0.7, source: 'issue 14' },
  { id: 'facade/ecdsa-p256-sign/async-c16', on: 'ratio', cmp: '>=', threshold: 1.0, source: 'issue 14' },
  { id: 'remote/rsa2048-sign/hosts2', on: 'ratio', cmp: '>=', threshold: 0.8, source: 'issue 17' },
  { id: 'fleet/apps4/members4', on: 'ratio', cmp: '>=', threshold: 0.9, source: 'issue 17' },
  { id: 'fleet/hetero/p99', on: 'ratio', cmp: '<=', threshold: 0.8, label: 'light p99 ratio host load on/off', source: 'issue 17' },
];

/** Ids issue 5 asks for that need parts not built yet, with what they need (none left today; kept for the next ones). */
export const PENDING: readonly { readonly pattern: string; readonly ids: readonly string[]; readonly needs: string }[] = [];

/** How a target stands in a results file. */
export type TargetStatus = 'met' | 'missed' | 'not measured yet' | 'not judged (quick soak)';

/** Judges one target against the results. */
export function judge(target: Target, results: readonly BenchResult[]): { status: TargetStatus; figure?: number; entry?: BenchResult } {
  const e = results.find((r) => r.id === target.id);
  if (e === undefined) return { status: 'not measured yet' };
  const figure = target.on === 'ratio' ? e.ratio : target.on === 'value' ? e.value : num(e[target.field ?? '']);
  if (target.id.startsWith('soak/') && e['quickSoak'] === true) return { status: 'not judged (quick soak)', figure, entry: e };
  // A figure the entry lacks (NaN) never passes.
  const met =
    target.cmp === '>=' ? figure >= target.threshold : target.cmp === '<=' ? figure <= target.threshold : target.cmp === '<' ? figure < target.threshold : figure === target.threshold;
  return { status: met ? 'met' : 'missed', figure, entry: e };
}

/**
 * What the scheduler comparison shows: which strategy is better on p99 with one slow
 * member, whether peak-EWMA keeps the reference behaviour under equal load, and so which
 * one the run recommends as the default. Undefined when the entries are missing.
 */
export function schedulerVerdict(results: readonly BenchResult[]): { better: 'peak-ewma' | 'least-busy' | 'neither'; keepsReference: boolean; recommended: 'peak-ewma' | 'least-busy'; text: string } | undefined {
  const p99 = results.find((r) => r.id === 'hetero/peak-ewma/p99');
  const equal = results.find((r) => r.id === 'hetero/peak-ewma/equal-load');
  if (p99 === undefined || equal === undefined) return undefined;
  const better = p99.ratio < SCHEDULER_RULES.clearlyBetter ? 'peak-ewma' : p99.ratio > 1 / SCHEDULER_RULES.clearlyBetter ? 'least-busy' : 'neither';
  const keepsReference = TARGETS.filter((t) => t.id === equal.id).every((t) => judge(t, results).status === 'met');
  const recommended = better === 'peak-ewma' && keepsReference ? 'peak-ewma' : 'least-busy';
  const p99Text =
    better === 'peak-ewma'
      ? `peak-EWMA is better on p99 with one slow member (${msFormat(p99.value)} ms against least-busy's ${msFormat(p99.baseline)} ms)`
      : better === 'least-busy'
        ? `least-busy is better on p99 with one slow member (${msFormat(p99.baseline)} ms against peak-EWMA's ${msFormat(p99.value)} ms)`
        : `neither is clearly better on p99 with one slow member (peak-EWMA ${msFormat(p99.value)} ms, least-busy ${msFormat(p99.baseline)} ms: ratio ${p99.ratio.toFixed(3)}, ` +
          `between ${SCHEDULER_RULES.clearlyBetter} and ${(1 / SCHEDULER_RULES.clearlyBetter).toFixed(2)})`;
  const equalText =
    `under equal load peak-EWMA ${keepsReference ? 'keeps' : 'does not keep'} the reference behaviour ` +
    `(throughput ×${equal.ratio.toFixed(3)}, p99 ${msFormat(num(equal['p99Ms']))} ms against ${msFormat(num(equal['baselineP99Ms']))} ms, ` +
    `largest share deviation from 1/3 ${num(equal['maxShareDeviation']).toFixed(3)})`;
  return {
    better,
    keepsReference,
    recommended,
    text: `This run: ${p99Text}; ${equalText}. So this run recommends **${recommended}** as the default${recommended === 'least-busy' ? ' (it stays the default)' : ''}.`,
  };
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

/** The charts of the page, by section. */
export type ChartKey = 'overhead' | 'throughput' | 'latency' | 'limit' | 'keygen' | 'emulated' | 'hetero' | 'failover-kill' | 'failover-hang' | 'soak';

/** Every chart the results allow, keyed by section. */
export function charts(file: BenchFile): Map<ChartKey, Chart> {
  const out = new Map<ChartKey, Chart>();
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
  const emulated = emulatedEntries(file.results);
  if (emulated.length > 0) {
    const categories = emulated.map(([n]) => String(n));
    out.set('emulated', {
      file: 'emulated-scaling.svg',
      alt: 'EMULATION: throughput of the virtual slot against the number of emulated-capacity members, with the ideal line',
      svg: panels(
        'EMULATION: throughput against emulated members',
        `each member emulates ${emulationLabel(emulated[0]![1])}; ideal = n × one member alone, same run (${when})`,
        [
          {
            kind: 'line',
            title: 'throughput (ops/s)',
            xLabel: 'members',
            yLabel: 'ops/s',
            categories,
            labelPoints: true,
            series: [
              { name: 'ideal: n × one member', color: '#bab0ac', points: emulated.map(([, r], i) => ({ x: i, y: r.baseline })) },
              { name: 'virtual slot', color: '#4e79a7', points: emulated.map(([, r], i) => ({ x: i, y: r.value })) },
            ],
          },
          {
            kind: 'line',
            title: 'ratio to ideal',
            xLabel: 'members',
            yLabel: 'virtual slot ÷ ideal',
            categories,
            labelPoints: true,
            series: [{ name: 'ratio', color: '#4e79a7', points: emulated.map(([, r], i) => ({ x: i, y: r.ratio })) }],
            refLines: [{ value: 0.95, label: 'target 0.95' }],
            format: (v) => v.toFixed(2),
          },
        ],
        { columns: 2, panelWidth: 420, panelHeight: 330 },
      ),
    });
  }

  const hetero = heteroCells(file.results);
  if (hetero.size > 0) {
    const strategies = ['least-busy', 'peak-ewma'];
    const series = [{ name: 'least-busy', color: '#9c755f' }, { name: 'peak-ewma', color: '#4e79a7' }];
    const pools = [...hetero.keys()];
    out.set('hetero', {
      file: 'hetero-p99.svg',
      alt: 'EMULATION: p99 latency and throughput of least-busy and peak-EWMA, with one slow member and with equal members',
      svg: panels(
        'Schedulers: least-busy and peak-EWMA (EMULATION)',
        `3 members, one 5x slower or all equal; same closed-loop load for both (${when})`,
        [
          {
            kind: 'bar',
            title: 'p99 latency (ms), lower is better',
            yLabel: 'ms',
            series,
            groups: pools.map((pool) => ({
              label: POOL_LABELS[pool],
              bars: strategies.map((s) => ({ series: s, value: hetero.get(pool)!.get(s)?.p99 ?? Number.NaN })),
            })),
            format: (v) => (v === 0 ? '0' : msFormat(v)),
          },
          {
            kind: 'bar',
            title: 'throughput (ops/s)',
            yLabel: 'ops/s',
            series,
            groups: pools.map((pool) => ({
              label: POOL_LABELS[pool],
              bars: strategies.map((s) => ({ series: s, value: hetero.get(pool)!.get(s)?.rate ?? Number.NaN })),
            })),
          },
        ],
        { columns: 2, panelWidth: 420, panelHeight: 320 },
      ),
    });
  }

  for (const fault of ['kill', 'hang'] as const) {
    const r = file.results.find((x) => x.id === `failover/${fault}`);
    const rates = r?.['rates'];
    if (r === undefined || !Array.isArray(rates) || rates.length === 0) continue;
    out.set(`failover-${fault}`, { file: `failover-${fault}.svg`, alt: `Throughput in 100 ms buckets while one of 3 member hosts is ${fault === 'kill' ? 'killed (SIGKILL)' : 'stopped (SIGSTOP)'} and recovered`, svg: failoverChart(r, fault, when) });
  }
  return out;
}

const POOL_LABELS: Record<'slow' | 'equal', string> = { slow: 'one member 5x slower', equal: 'equal members' };

/** `4 engines × 20 ms` from an entry's emulation fields. */
function emulationLabel(r: BenchResult): string {
  return `${num(r['engines'])} engines × ${num(r['serviceTimeMs'])} ms`;
}

/** The emulated/members<n> entries, by n. */
function emulatedEntries(results: readonly BenchResult[]): [number, BenchResult][] {
  return results
    .filter((r) => /^emulated\/members\d+$/.test(r.id))
    .map((r): [number, BenchResult] => [Number(r.id.slice('emulated/members'.length)), r])
    .sort(([a], [b]) => a - b);
}

/** p99 (ms) and throughput per pool and strategy, from the hetero/* entries. */
function heteroCells(results: readonly BenchResult[]): Map<'slow' | 'equal', Map<string, { p99: number; rate: number; entry: BenchResult }>> {
  const out = new Map<'slow' | 'equal', Map<string, { p99: number; rate: number; entry: BenchResult }>>();
  for (const r of results) {
    const [family, strategy, kind] = parts(r.id);
    if (family !== 'hetero' || strategy === undefined) continue;
    const pool = kind === 'p99' ? 'slow' : kind === 'equal-load' ? 'equal' : undefined;
    if (pool === undefined) continue;
    const cell = pool === 'slow' ? { p99: r.value, rate: num(r['rate']), entry: r } : { p99: num(r['p99Ms']), rate: r.value, entry: r };
    if (!out.has(pool)) out.set(pool, new Map());
    out.get(pool)!.set(strategy, cell);
  }
  return new Map((['slow', 'equal'] as const).filter((p) => out.has(p)).map((p) => [p, out.get(p)!]));
}

/** Throughput over time during a failover run, with the fault, the detection and the recovery marked. */
export function failoverChart(r: BenchResult, fault: 'kill' | 'hang', when: string): string {
  const rates = (r['rates'] as unknown[]).map(Number);
  const bucketS = num(r['bucketMs']) / 1000;
  const faultAt = num(r['faultAtS']);
  const recovered = r['recovered'] === true;
  const errors = num(r['errors']);
  const what = fault === 'kill' ? 'SIGKILL' : 'SIGSTOP';
  const markers: XMarker[] = [
    { x: faultAt, label: `${what} of one host`, color: '#c0392b' },
    ...(Number.isFinite(num(r['detectedAtS'])) ? [{ x: num(r['detectedAtS']), label: `member failed (+${num(r['detectedAfterMs']).toFixed(0)} ms)`, color: '#e67e22' }] : []),
    ...(recovered ? [{ x: faultAt + r.value / 1000, label: `back to 2/3 (+${r.value.toFixed(0)} ms)`, color: '#27ae60' }] : []),
    ...(Number.isFinite(num(r['recoveredAtS'])) ? [{ x: num(r['recoveredAtS']), label: `member recovered (+${num(r['memberRecoveredAfterMs']).toFixed(0)} ms)`, color: '#2980b9' }] : []),
  ];
  return lineChart({
    title:
      `Failover, ${what} of 1 of ${num(r['members'])} member hosts: ` +
      (recovered ? `back to 2/3 in ${r.value.toFixed(0)} ms` : `NOT back to 2/3 in ${(r.value / 1000).toFixed(1)} s`) +
      `, ${errors} error${errors === 1 ? '' : 's'}`,
    subtitle: `${num(r['callers'])} callers of HMAC-SHA256 1 KiB; ops/s in ${num(r['bucketMs'])} ms buckets${fault === 'hang' ? `; deadline ${num(r['deadlineMs'])} ms` : ''} (${when})`,
    xLabel: 'seconds since the load started',
    yLabel: 'ops/s',
    series: [{ name: `throughput (${num(r['bucketMs'])} ms buckets)`, color: '#4e79a7', points: rates.map((y, i) => ({ x: (i + 0.5) * bucketS, y })) }],
    refLines: [
      { value: num(r['preFaultRate']), label: `before the fault ${formatValue(num(r['preFaultRate']))}/s`, color: '#555' },
      { value: num(r['threshold']), label: `2/3 of it`, color: '#c0392b' },
    ],
    xMarkers: markers,
    width: 860,
    height: 400,
  });
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
  const img = (key: ChartKey): string => {
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
        const what = t.label ?? (t.on === 'ratio' ? 'ratio' : t.id.startsWith('soak/') ? 'growth %' : 'value');
        // Counts (errors) and milliseconds as whole numbers; fields such as share deviations to 3 decimals.
        const figure =
          j.figure === undefined || !Number.isFinite(j.figure) ? '–' : t.on === 'ratio' ? j.figure.toFixed(3) : t.field === 'errors' || j.entry?.unit === 'ms' ? String(Math.round(j.figure)) : j.figure.toFixed(t.on === 'field' ? 3 : 2);
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
        "`limit/<op>/hosts<n>` is the virtual slot over n member host processes (`transport: 'host'`, 16 callers) against this sum, " +
          'measured interleaved with it: what the host transport (a process per member, a Unix socket hop) leaves of the machine.',
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

  lines.push('## Emulated device capacity (EMULATION)', '');
  const emulated = emulatedEntries(file.results);
  if (emulated.length === 0) lines.push('Not measured in this run.', '');
  else {
    const e0 = emulated[0]![1];
    lines.push(
      `**EMULATION, not real devices.** Each member is a SoftHSM token behind a member host that runs every command through ` +
        `${num(e0['engines'])} engines, each held for at least ${num(e0['serviceTimeMs'])} ms (the member host's \`emulate\` option), so a member behaves ` +
        `like a network HSM of fixed capacity (at most ${formatValue((1000 * num(e0['engines'])) / num(e0['serviceTimeMs']))} commands/s) whatever this machine's cores do. ` +
        'This measures how the virtual slot scales with members when the members are the limit, past what 2 cores could show with real work. ' +
        '`emulated/members<n>`: C_GenerateRandom(32) through the virtual slot over n such members, with 2 × engines callers per member, ' +
        'against n × the throughput of one such member host driven directly (no group), interleaved in the same run. ' +
        'One group of as many hosts as the largest n serves every n: members beyond n are set standby (out of load balancing) while n are measured.',
      '',
      img('emulated'),
      table(
        ['members', 'virtual slot', 'ideal (n × one alone)', 'ratio', 'callers', 'p50 / p99 ms', 'notes'],
        emulated.map(([n, r]) => [
          String(n),
          fmt(r.value, r.unit),
          fmt(r.baseline, r.unit),
          r.ratio.toFixed(3),
          String(num(r['callers'])),
          `${msFormat(num(r['p50Ms']))} / ${msFormat(num(r['p99Ms']))}`,
          notes.get(r.id) ?? '',
        ]),
        [0, 1, 2, 3, 4, 5],
      ),
      '',
    );
  }

  lines.push('## Schedulers: one slow member (EMULATION)', '');
  const hetero = heteroCells(file.results);
  if (hetero.size === 0) lines.push('Not measured in this run.', '');
  else {
    const verdict = schedulerVerdict(file.results);
    lines.push(
      "**EMULATION.** Least-busy round-robin (the reference, Luna's) and peak-EWMA (power of two choices over a latency-aware cost) under the same " +
        `closed-loop load (${num([...hetero.values()][0]!.values().next().value!.entry['callers'])} callers, as many as the pool's engines; C_GenerateRandom(32)). \`hetero/<strategy>/p99\`: p99 latency with 3 members of ` +
        "4 engines where one takes 100 ms per command and two take 20 ms (5x slower); baseline = least-busy's p99, so a peak-EWMA ratio below 1 is better. " +
        "`hetero/<strategy>/equal-load`: throughput over 3 equal members (20 ms each) against least-busy's, with p99 and each member's share of the operations: " +
        `issue 5 makes the better strategy the recommended default only if it keeps the reference behaviour there (here: throughput >= ${SCHEDULER_RULES.equalMinRatio} and ` +
        `p99 <= ${SCHEDULER_RULES.equalMaxP99Ratio} × least-busy's, every share within 1/3 ± ${SCHEDULER_RULES.maxShareDeviation}); "clearly better" on p99 means a ratio below ${SCHEDULER_RULES.clearlyBetter}. ` +
        'Both strategies run in one group (a scheduler that switches between the two built-in ones), interleaved.',
      '',
      img('hetero'),
      table(
        ['pool', 'strategy', 'p99 ms', 'p50 ms', 'ops/s', 'shares per member', 'id', 'ratio', 'notes'],
        [...hetero].flatMap(([pool, byStrategy]) =>
          [...byStrategy].map(([strategy, c]) => [
            POOL_LABELS[pool],
            strategy,
            msFormat(c.p99),
            msFormat(num(c.entry['p50Ms'])),
            fmt(c.rate, 'ops/s'),
            Array.isArray(c.entry['shares']) ? (c.entry['shares'] as unknown[]).map((x) => Number(x).toFixed(2)).join(' / ') : '',
            `\`${c.entry.id}\``,
            c.entry.ratio.toFixed(3),
            notes.get(c.entry.id) ?? '',
          ]),
        ),
        [2, 3, 4, 7],
      ),
      '',
      verdict === undefined ? 'Not every scheduler entry was measured in this run: no recommendation.' : verdict.text,
      '',
      "This page changes nothing in the library: `scheduler: 'least-busy'` stays the default until someone decides otherwise.",
      '',
    );
  }

  lines.push('## Failover: a member host killed or hung under load', '');
  const failovers = file.results.filter((r) => r.id === 'failover/kill' || r.id === 'failover/hang');
  if (failovers.length === 0) lines.push('Not measured in this run.', '');
  else {
    const f0 = failovers[0]!;
    lines.push(
      `${num(f0['members'])} member hosts (\`transport: 'host'\`, deadline ${num(f0['deadlineMs'])} ms, heartbeat ${num(f0['heartbeatIntervalMs'])} ms, ` +
        `recovery every ${num(f0['recoveryIntervalMs'])} ms) under a steady load of ${num(f0['callers'])} callers (HMAC-SHA256 1 KiB); ` +
        'mid-run one host is SIGKILLed (`failover/kill`) or SIGSTOPped (`failover/hang`, never continued: the group fails it after the deadline, ' +
        'closes it and starts a new host). value = ms from the fault until throughput, in 100 ms buckets aligned on the fault, is back to 2/3 ((n-1)/n) ' +
        'of the pre-fault throughput for 3 buckets in a row, counted to the end of the first of them (so never below 100 ms). ' +
        `baseline = ${FAILOVER_TARGET_MS} ms, the target of issue 4 for a kill, so ratio <= 1 means back in time. ` +
        "`errors` counts every failed operation and wrong MAC (target 0). When 2 hosts can do what 3 did (this machine's 2 cores are the limit), " +
        'throughput barely dips and the figure is one bucket.',
      '',
      img('failover-kill'),
      img('failover-hang'),
      table(
        ['id', 'back to 2/3', 'errors', 'member failed after', 'member recovered after', 'before the fault', 'lowest bucket after', 'notes'],
        failovers.map((r) => [
          `\`${r.id}\``,
          r['recovered'] === false ? `not back (${Math.round(r.value)} ms observed)` : `${Math.round(r.value)} ms`,
          String(num(r['errors'])),
          Number.isFinite(num(r['detectedAfterMs'])) ? `${num(r['detectedAfterMs']).toFixed(0)} ms` : 'never',
          Number.isFinite(num(r['memberRecoveredAfterMs'])) ? `${num(r['memberRecoveredAfterMs']).toFixed(0)} ms` : 'not in the run',
          fmt(num(r['preFaultRate']), 'ops/s'),
          fmt(num(r['dipRate']), 'ops/s'),
          notes.get(r.id) ?? '',
        ]),
        [1, 2, 3, 4, 5, 6],
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

  if (PENDING.length > 0) {
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
  }

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
const CHART_FILES = [
  'overhead-ratio.svg',
  'throughput-concurrency.svg',
  'latency-percentiles.svg',
  'machine-limit.svg',
  'keygen-members.svg',
  'emulated-scaling.svg',
  'hetero-p99.svg',
  'failover-kill.svg',
  'failover-hang.svg',
  'soak-rss.svg',
];

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
