/**
 * The benchmark entry: `npm run bench` (full) or `npm run bench -- --quick`.
 *
 *   --quick                 3 x 0.75 s instead of 3 x 3 s per variant and a 20 s soak instead of a
 *                           2-minute one (about 4.5 minutes on 2 cores; the full run takes about 18)
 *   --report                measure nothing: render bench/RESULTS.md and bench/charts/*.svg again
 *                           from bench/results/latest.json
 *   --only <prefix>[,...]   run only the ids starting with a prefix, e.g. --only overhead/ecdsa
 *   --threads-per-member <n>[,...]
 *                           also measure the virtual slot with threadsPerMember n
 *                           (ids overhead/<op>/c<k>/threads<n>); the default config is always measured
 *   --reps <n>, --duration <seconds>, --warmup <seconds>
 *                           override the repetitions and timing
 *
 * Writes bench/results/latest.json, a dated copy and latest.md, renders bench/RESULTS.md
 * with its charts (bench/charts/*.svg), and prints the table. A progress bar shows on a
 * terminal; elsewhere progress comes as plain lines.
 * Ctrl-C stops the measurement, closes everything and removes the test bed.
 */
import { threadpoolSize } from './env.js';

import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { softHsmVersion } from '../src/testbed/softhsm-testbed.js';
import { BenchAborted, type BenchContext, type BenchFamily, type BenchOptions, type BenchResult, type ResultNote } from './harness.js';
import { overhead } from './overhead.js';
import { multipart } from './multipart.js';
import { facade } from './facade.js';
import { keygen } from './keygen.js';
import { limit } from './limit.js';
import { limitHosts } from './limit-hosts.js';
import { remote } from './remote.js';
import { fleet } from './fleet.js';
import { emulated } from './emulated.js';
import { hetero } from './hetero.js';
import { failover } from './failover.js';
import { soak } from './soak.js';
import { createProgress, formatDuration } from './progress.js';
import { checkBenchFile, isoSeconds, renderMarkdown, renderTable, writeResults, writeRunNotes, type BenchFile, type RunNotes } from './report.js';
import { writeResultsPage } from './results-page.js';
import { BENCH_DIR, RESULTS_DIR } from './paths.js';

/** Every family, in run order. A new family is one more file and one more entry here. */
const FAMILIES: readonly BenchFamily[] = [overhead, multipart, facade, keygen, limit, limitHosts, remote, emulated, hetero, fleet, failover, soak];


const USAGE = `usage: npm run bench -- [--quick] [--report] [--only <prefix>[,<prefix>...]] [--threads-per-member <n>[,<n>...]]
                        [--reps <n>] [--duration <seconds>] [--warmup <seconds>]`;

function parseList(value: string | undefined, what: string, positiveInts: true): number[];
function parseList(value: string | undefined, what: string, positiveInts?: false): string[];
function parseList(value: string | undefined, what: string, positiveInts = false): (string | number)[] {
  if (value === undefined) return [];
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (!positiveInts) return items;
  return items.map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be positive integers, got ${JSON.stringify(s)}`);
    return n;
  });
}

function positive(value: string | undefined, what: string, fallback: number, integer = false): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (integer && (!Number.isInteger(n) || n < 1))) throw new Error(`${what} must be a ${integer ? 'positive integer' : 'non-negative number'}, got ${JSON.stringify(value)}`);
  return n;
}

/** Where log lines go: stdout until the progress display takes over. */
let printLine: (line: string) => void = (line) => console.log(line);

/** `[bench 14:18:05] line`. */
function stamp(line: string): string {
  return `[bench ${new Date().toISOString().slice(11, 19)}] ${line}`;
}

function log(line: string): void {
  printLine(stamp(line));
}

/** --report: RESULTS.md and the charts again from latest.json, nothing measured. */
async function reportOnly(): Promise<number> {
  const path = `${RESULTS_DIR}latest.json`;
  let file: BenchFile;
  try {
    file = JSON.parse(readFileSync(path, 'utf8')) as BenchFile;
  } catch (error) {
    console.error(`cannot read ${path}: ${(error as Error).message}`);
    return 1;
  }
  const problems = checkBenchFile(file);
  if (problems.length > 0) {
    console.error(`${path} is not in the shape of BENCH-FORMAT.md:\n  ${problems.join('\n  ')}`);
    return 1;
  }
  // The settings and notes of the run, when they belong to this very file.
  let meta: RunNotes | undefined;
  try {
    meta = JSON.parse(readFileSync(`${RESULTS_DIR}latest-notes.json`, 'utf8')) as RunNotes;
  } catch {
    meta = undefined;
  }
  const charts = await writeResultsPage(BENCH_DIR, file, meta?.date === file.date ? { notes: meta.notes, settings: meta.settings } : {});
  log(`rendered bench/RESULTS.md and ${charts.length} charts from bench/results/latest.json (${file.date})`);
  return 0;
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        report: { type: 'boolean', default: false },
        only: { type: 'string', multiple: true },
        'threads-per-member': { type: 'string' },
        reps: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  if (args.report === true) return reportOnly();
  const quick = args.quick === true;
  let reps: number, durationMs: number, warmupMs: number, options: BenchOptions, prefixes: string[];
  try {
    // Quick: as many repetitions as the full run but shorter ones, so that every id (with
    // concurrency 64, the machine's limit, member hosts, emulation, failover and a short
    // soak) fits in the 5 minutes BENCH-FORMAT.md allows on 2 cores, with room for a busy
    // machine: 0.75 s per variant (1 s until the member-host families came, which took
    // about a minute of their own); medians of 3 interleaved repetitions still stand up to
    // a burst of load.
    reps = positive(args.reps, '--reps', 3, true);
    durationMs = positive(args.duration, '--duration', quick ? 0.75 : 3) * 1000;
    warmupMs = positive(args.warmup, '--warmup', quick ? 0.25 : 0.5) * 1000;
    options = { threadsPerMember: parseList(args['threads-per-member'], '--threads-per-member', true) };
    prefixes = (args.only ?? []).flatMap((o) => parseList(o, '--only'));
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const wants = (id: string): boolean => prefixes.length === 0 || prefixes.some((p) => id.startsWith(p));
  const families = FAMILIES.filter((f) => f.ids(options).some(wants));
  if (families.length === 0) {
    console.error(`--only ${prefixes.join(',')} matches no benchmark id. Known ids:\n  ${FAMILIES.flatMap((f) => f.ids(options)).join('\n  ')}`);
    return 2;
  }

  // Interruption: the first SIGINT/SIGTERM aborts the measurement loops and lets every
  // family close its group and remove its test bed; a later one (after a second) exits
  // at once, removing the test bed directories synchronously.
  const controller = new AbortController();
  const dirs = new Set<string>();
  let firstSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!controller.signal.aborted) {
      firstSignalAt = Date.now();
      log(`${signal}: stopping after the current measurement and cleaning up (again to exit at once)`);
      controller.abort();
      return;
    }
    if (Date.now() - firstSignalAt < 1000) return; // one Ctrl-C often arrives twice (npm, tsx)
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const started = new Date();
  const loadAtStart = os.loadavg()[0]!;
  const [softhsm] = await Promise.all([softHsmVersion()]);
  const cpus = os.cpus();
  const machine = { cpus: cpus.length, cpuModel: cpus[0]?.model.trim() ?? 'unknown', node: process.version, softhsm: softhsm ?? 'unknown' };
  const settings =
    `${reps} x ${durationMs / 1000} s per variant after ${warmupMs / 1000} s warm-up, UV_THREADPOOL_SIZE ${threadpoolSize}` +
    (options.threadsPerMember.length > 0 ? `, extra variants threadsPerMember ${options.threadsPerMember.join(', ')}` : '') +
    (prefixes.length > 0 ? `, only ${prefixes.join(', ')}` : '');
  log(`${quick ? 'quick' : 'full'} run: ${settings}`);
  log(`machine: ${machine.cpus} x ${machine.cpuModel}, Node ${machine.node}, SoftHSM ${machine.softhsm}`);

  let advance: (seconds: number) => void = () => undefined;
  const ctx: BenchContext = {
    quick,
    reps,
    durationMs,
    warmupMs,
    signal: controller.signal,
    wants,
    log,
    advance: (seconds) => advance(seconds),
    options,
    trackDir(dir) {
      dirs.add(dir);
      return () => dirs.delete(dir);
    },
  };
  const planned = families.reduce((a, f) => a + f.plannedSeconds(ctx), 0);
  log(`planned: about ${formatDuration(planned)}`);
  const progress = createProgress(planned, process.stdout, stamp);
  printLine = (line) => progress.log(line);
  advance = (seconds) => progress.advance(seconds);

  const results: BenchResult[] = [];
  const notes: ResultNote[] = [];
  try {
    for (const family of families) {
      const t0 = performance.now();
      log(`${family.name}: starting`);
      progress.phase(family.name);
      const out = await family.run(ctx);
      results.push(...out.results);
      notes.push(...out.notes);
      log(`${family.name}: done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
  } catch (error) {
    progress.stop();
    printLine = (line) => console.log(line);
    if (error instanceof BenchAborted || controller.signal.aborted) {
      log('interrupted: no results written');
      return 130;
    }
    throw error;
  }
  progress.stop();
  printLine = (line) => console.log(line);

  const file: BenchFile = { date: isoSeconds(started), machine, quick, results };
  // Other work on the machine moves every number: say how busy it was (1-minute load average).
  const load = `${loadAtStart.toFixed(2)} at the start, ${os.loadavg()[0]!.toFixed(2)} at the end, on ${machine.cpus} cores`;
  const markdown = renderMarkdown(file, notes, `${settings}; load average ${load}`);
  const dated = await writeResults(RESULTS_DIR, file, markdown);
  await writeRunNotes(RESULTS_DIR, { date: file.date, settings: `${settings}; load average ${load}`, notes });
  const charts = await writeResultsPage(BENCH_DIR, file, { notes, settings: `${settings}; load average ${load}` });
  console.log(`\n${renderTable(results, notes)}\n`);
  log(`wrote bench/results/latest.json, ${dated.slice(dated.lastIndexOf('/bench/') + 1)}, bench/results/latest.md, bench/RESULTS.md and ${charts.length} charts in bench/charts/ ` +
    `in ${((Date.now() - started.getTime()) / 1000).toFixed(0)} s`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Everything is closed by now and the process should end by itself; if some handle
    // outlives the run, do not hang (the timer is unref'd: it does not keep us alive).
    setTimeout(() => {
      console.error('bench: something still runs after the end; exiting');
      process.exit(code);
    }, 10_000).unref();
  },
  (error: unknown) => {
    console.error('bench failed:', error instanceof Error ? (error.stack ?? error.message) : error);
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 10_000).unref();
  },
);
