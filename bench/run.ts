/**
 * The benchmark entry: `npm run bench` (full) or `npm run bench -- --quick`.
 *
 *   --quick                 5 x 1 s instead of 3 x 3 s per variant (about 2.5 minutes on 2 cores)
 *   --only <prefix>[,...]   run only the ids starting with a prefix, e.g. --only overhead/ecdsa
 *   --threads-per-member <n>[,...]
 *                           also measure the virtual slot with threadsPerMember n
 *                           (ids overhead/<op>/c<k>/threads<n>); the default config is always measured
 *   --reps <n>, --duration <seconds>, --warmup <seconds>
 *                           override the repetitions and timing
 *
 * Writes bench/results/latest.json, a dated copy and latest.md, and prints the table.
 * Ctrl-C stops the measurement, closes everything and removes the test bed.
 */
import { threadpoolSize } from './env.js';

import { rmSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { softHsmVersion } from '../src/testbed/softhsm-testbed.js';
import { BenchAborted, type BenchContext, type BenchFamily, type BenchOptions, type BenchResult, type ResultNote } from './harness.js';
import { overhead } from './overhead.js';
import { keygen } from './keygen.js';
import { isoSeconds, renderMarkdown, renderTable, writeResults, type BenchFile } from './report.js';

/** Every family, in run order. A new family is one more file and one more entry here. */
const FAMILIES: readonly BenchFamily[] = [overhead, keygen];

const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

const USAGE = `usage: npm run bench -- [--quick] [--only <prefix>[,<prefix>...]] [--threads-per-member <n>[,<n>...]]
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

function log(line: string): void {
  const t = new Date().toISOString().slice(11, 19);
  console.log(`[bench ${t}] ${line}`);
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
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
  const quick = args.quick === true;
  let reps: number, durationMs: number, warmupMs: number, options: BenchOptions, prefixes: string[];
  try {
    // Quick: more but shorter repetitions than the full run, so that the medians still
    // stand up to bursts of load on a shared 2-core machine (about 2.5 minutes in all).
    reps = positive(args.reps, '--reps', quick ? 5 : 3, true);
    durationMs = positive(args.duration, '--duration', quick ? 1 : 3) * 1000;
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

  const ctx: BenchContext = {
    quick,
    reps,
    durationMs,
    warmupMs,
    signal: controller.signal,
    wants,
    log,
    options,
    trackDir(dir) {
      dirs.add(dir);
      return () => dirs.delete(dir);
    },
  };

  const results: BenchResult[] = [];
  const notes: ResultNote[] = [];
  try {
    for (const family of families) {
      const t0 = performance.now();
      log(`${family.name}: starting`);
      const out = await family.run(ctx);
      results.push(...out.results);
      notes.push(...out.notes);
      log(`${family.name}: done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
  } catch (error) {
    if (error instanceof BenchAborted || controller.signal.aborted) {
      log('interrupted: no results written');
      return 130;
    }
    throw error;
  }

  const file: BenchFile = { date: isoSeconds(started), machine, quick, results };
  // Other work on the machine moves every number: say how busy it was (1-minute load average).
  const load = `${loadAtStart.toFixed(2)} at the start, ${os.loadavg()[0]!.toFixed(2)} at the end, on ${machine.cpus} cores`;
  const markdown = renderMarkdown(file, notes, `${settings}; load average ${load}`);
  const dated = await writeResults(RESULTS_DIR, file, markdown);
  console.log(`\n${renderTable(results, notes)}\n`);
  log(`wrote bench/results/latest.json, ${dated.slice(dated.lastIndexOf('/bench/') + 1)} and bench/results/latest.md ` +
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
