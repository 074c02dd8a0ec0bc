/**
 * Writes the results: bench/results/latest.json and a dated copy in the shape of
 * /work/shared/BENCH-FORMAT.md, and a human-readable table (stdout and latest.md).
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BenchResult, ResultNote } from './harness.js';

/** The machine-readable file, exactly as BENCH-FORMAT.md describes it. */
export interface BenchFile {
  readonly date: string;
  readonly machine: { readonly cpus: number; readonly cpuModel: string; readonly node: string; readonly softhsm: string };
  readonly quick: boolean;
  readonly results: readonly BenchResult[];
}

/**
 * What is wrong with `data` as a results file in the shape of BENCH-FORMAT.md (an empty
 * list when nothing is): the top-level keys, the machine, and in every entry an id, a
 * unit of ops/s, ms or %, finite value and baseline, and ratio = value / baseline (to the
 * rounding of 3 decimals). Extra keys in an entry are allowed, as the format says.
 */
export function checkBenchFile(data: unknown): string[] {
  const problems: string[] = [];
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(data)) return ['not an object'];
  if (typeof data['date'] !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(data['date'])) problems.push(`date must be like 2026-11-23T12:00:00Z, got ${JSON.stringify(data['date'])}`);
  const m = data['machine'];
  if (!isObject(m)) problems.push('machine must be an object');
  else {
    if (typeof m['cpus'] !== 'number') problems.push('machine.cpus must be a number');
    for (const k of ['cpuModel', 'node', 'softhsm']) if (typeof m[k] !== 'string') problems.push(`machine.${k} must be a string`);
  }
  if (typeof data['quick'] !== 'boolean') problems.push('quick must be a boolean');
  const results = data['results'];
  if (!Array.isArray(results)) return [...problems, 'results must be an array'];
  const seen = new Set<string>();
  results.forEach((r: unknown, i) => {
    if (!isObject(r)) return problems.push(`results[${i}] is not an object`);
    const where = `results[${i}] (${String(r['id'])})`;
    if (typeof r['id'] !== 'string' || !/^[a-z0-9-]+(\/[a-z0-9.-]+)+$/.test(r['id'])) problems.push(`${where}: id must be slash-separated lower-case words`);
    else if (seen.has(r['id'])) problems.push(`${where}: duplicate id`);
    else seen.add(r['id']);
    if (!['ops/s', 'ms', '%'].includes(r['unit'] as string)) problems.push(`${where}: unit must be ops/s, ms or %`);
    const { value, baseline, ratio } = r;
    for (const [k, v] of Object.entries({ value, baseline, ratio })) if (typeof v !== 'number' || !Number.isFinite(v)) problems.push(`${where}: ${k} must be a finite number`);
    if (typeof value === 'number' && typeof baseline === 'number' && typeof ratio === 'number' && baseline !== 0) {
      // value and baseline are rounded for the file, the ratio from the exact figures.
      const tolerance = 0.0015 + Math.abs(ratio) * 0.01;
      if (Math.abs(value / baseline - ratio) > tolerance) problems.push(`${where}: ratio ${ratio} is not value / baseline (${value} / ${baseline})`);
    }
    return undefined;
  });
  return problems;
}

/** `2026-11-23T12:00:00Z` (no milliseconds). */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Writes a file through a temporary name, so that a reader never sees half of it. */
async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

function formatNumber(value: number, unit: string): string {
  if (!Number.isFinite(value)) return String(value);
  if (unit === 'ops/s') return Math.round(value).toLocaleString('en-US');
  return value.toLocaleString('en-US', { maximumFractionDigits: 2 });
}

/** The results as a Markdown table (also readable as plain text). */
export function renderTable(results: readonly BenchResult[], notes: readonly ResultNote[]): string {
  const byId = new Map(notes.map((n) => [n.id, n]));
  const rows = results.map((r) => {
    const n = byId.get(r.id);
    const target = n?.target === undefined ? '' : `${n.target} ${n.met ? 'met' : 'MISSED'}`;
    return [r.id, `${formatNumber(r.value, r.unit)} ${r.unit}`, `${formatNumber(r.baseline, r.unit)} ${r.unit}`, r.ratio.toFixed(3), target, n?.note ?? ''];
  });
  const header = ['id', 'value', 'baseline', 'ratio', 'target', 'notes'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => (i >= 1 && i <= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i >= 1 && i <= 3 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

export function renderMarkdown(file: BenchFile, notes: readonly ResultNote[], settings: string): string {
  const m = file.machine;
  return [
    `# pkcs11-ha benchmark, ${file.date}${file.quick ? ' (quick)' : ''}`,
    '',
    `Machine: ${m.cpus} x ${m.cpuModel}, Node ${m.node}, SoftHSM ${m.softhsm}.`,
    `Settings: ${settings}.`,
    '',
    'value = the virtual slot; baseline, for overhead/*: pkcs11js used directly on the same token and keys,',
    'the better of a sync loop and async calls at the same concurrency (every other family says its',
    'baseline in bench/RESULTS.md); ratio = value / baseline (medians over the repetitions, measured',
    'interleaved in the same run).',
    '',
    renderTable(file.results, notes),
    '',
  ].join('\n');
}

/**
 * What the JSON leaves out and RESULTS.md shows: the run's settings and per-id notes, kept
 * in latest-notes.json beside latest.json so that `--report` can render the page again.
 */
export interface RunNotes {
  /** The date of the results file these notes belong to. */
  readonly date: string;
  readonly settings: string;
  readonly notes: readonly ResultNote[];
}

/** Writes latest-notes.json into `dir`. */
export async function writeRunNotes(dir: string, notes: RunNotes): Promise<void> {
  await writeAtomic(join(dir, 'latest-notes.json'), `${JSON.stringify(notes, null, 2)}\n`);
}

/** Writes latest.json, `<date>.json` and latest.md into `dir`; returns the dated file's path. */
export async function writeResults(dir: string, file: BenchFile, markdown: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const json = `${JSON.stringify(file, null, 2)}\n`;
  const dated = join(dir, `${file.date.replace(/:/g, '-')}.json`);
  await writeAtomic(dated, json);
  await writeAtomic(join(dir, 'latest.json'), json);
  await writeAtomic(join(dir, 'latest.md'), markdown);
  return dated;
}
