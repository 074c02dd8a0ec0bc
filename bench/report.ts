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
    'value = the virtual slot; baseline = pkcs11js used directly on the same token and keys,',
    'the better of a sync loop and async calls at the same concurrency; ratio = value / baseline',
    '(medians over the repetitions, measured interleaved in the same run).',
    '',
    renderTable(file.results, notes),
    '',
  ].join('\n');
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
