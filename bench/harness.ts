/**
 * The timing harness shared by every bench family: closed-loop drivers (k concurrent
 * callers, each issuing its next operation as soon as the previous one completes) that
 * run for a fixed duration after a warm-up, and interleaved repetitions reported as
 * medians.
 *
 * Only `performance.now()` is used for timing: no timer is ever armed, so nothing keeps
 * running after a measurement ends.
 */
import { performance } from 'node:perf_hooks';

/** One entry of bench/results/latest.json (see /work/shared/BENCH-FORMAT.md). */
export interface BenchResult {
  readonly id: string;
  readonly unit: 'ops/s' | 'ms' | '%';
  readonly value: number;
  readonly baseline: number;
  /** value / baseline. */
  readonly ratio: number;
  /** Extra keys some ids carry (e.g. `errors` for failover/*). */
  readonly [extra: string]: unknown;
}

/** Human-readable details of one result, for latest.md and stdout only (not in the JSON). */
export interface ResultNote {
  readonly id: string;
  readonly note: string;
  /** A goal for the ratio, e.g. '>= 1.3', and whether this run met it. */
  readonly target?: string;
  readonly met?: boolean;
}

/** What a family gets from bench/run.ts. */
export interface BenchContext {
  readonly quick: boolean;
  /** Repetitions of every measurement. */
  readonly reps: number;
  /** Measured time of one repetition of one variant. */
  readonly durationMs: number;
  /** Unmeasured run before each measured one. */
  readonly warmupMs: number;
  /** Aborted on SIGINT / SIGTERM: loops stop early and families unwind through `finally`. */
  readonly signal: AbortSignal;
  /** True if an id was asked for (by --only). */
  wants(id: string): boolean;
  /** Prints one progress line. */
  log(line: string): void;
  /** Family-specific options from the command line (e.g. threadsPerMember variants). */
  readonly options: BenchOptions;
  /**
   * Registers a directory to remove synchronously if the process must exit without
   * unwinding (a second SIGINT); returns a function that unregisters it.
   */
  trackDir(dir: string): () => void;
}

/** Options given on the command line that families may read. */
export interface BenchOptions {
  /** Extra group variants with these `threadsPerMember` values (ids get a `/threads<n>` suffix). */
  readonly threadsPerMember: readonly number[];
}

/** A family of benchmarks: one file under bench/, listed in bench/run.ts. */
export interface BenchFamily {
  /** Prefix of every id of the family, e.g. `overhead/`. */
  readonly name: string;
  /** Every id the family can produce (so that --only can skip a family without running it). */
  ids(options: BenchOptions): string[];
  run(ctx: BenchContext): Promise<{ results: BenchResult[]; notes: ResultNote[] }>;
}

/** Thrown out of a measurement loop when the run was interrupted. */
export class BenchAborted extends Error {
  constructor() {
    super('benchmark interrupted');
    this.name = 'BenchAborted';
  }
}

export function checkAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new BenchAborted();
}

/** Timing of one measurement. */
export interface LoopTiming {
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly signal: AbortSignal;
}

/**
 * Runs `concurrency` callers of `op` (each awaits its operation, then starts the next)
 * for `warmupMs`, lets them finish, then again for `durationMs`, counting operations.
 * Operations still in flight at the deadline are awaited and counted, and the elapsed
 * time runs until the last one completes.
 *
 * @param op gets the caller's lane number (0 .. concurrency-1), e.g. to pick its session
 * @returns operations per second
 */
export async function closedLoop(concurrency: number, op: (lane: number) => Promise<unknown>, timing: LoopTiming): Promise<number> {
  const { signal } = timing;
  const phase = async (ms: number): Promise<{ ops: number; elapsedMs: number }> => {
    const start = performance.now();
    const end = start + ms;
    let ops = 0;
    const lane = async (i: number): Promise<void> => {
      while (performance.now() < end && !signal.aborted) {
        await op(i);
        ops++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, (_, i) => lane(i)));
    return { ops, elapsedMs: performance.now() - start };
  };
  if (timing.warmupMs > 0) await phase(timing.warmupMs);
  checkAborted(signal);
  const { ops, elapsedMs } = await phase(timing.durationMs);
  checkAborted(signal);
  return ops / (elapsedMs / 1000);
}

/**
 * One caller making synchronous calls back to back (the event loop is blocked meanwhile:
 * that is what a sync caller does).
 * @returns operations per second
 */
export function syncLoop(op: () => unknown, timing: LoopTiming): number {
  const phase = (ms: number): { ops: number; elapsedMs: number } => {
    const start = performance.now();
    const end = start + ms;
    let ops = 0;
    let now = start;
    while (now < end) {
      op();
      ops++;
      now = performance.now();
    }
    return { ops, elapsedMs: now - start };
  };
  if (timing.warmupMs > 0) phase(timing.warmupMs);
  checkAborted(timing.signal);
  const { ops, elapsedMs } = phase(timing.durationMs);
  return ops / (elapsedMs / 1000);
}

/** A thing to measure: returns one sample (e.g. ops/s). */
export interface Variant {
  readonly name: string;
  readonly measure: () => Promise<number> | number;
}

/** Samples of each variant, in repetition order. */
export type Samples = Map<string, number[]>;

/**
 * Measures every variant once per repetition for `reps` repetitions, alternating the
 * order: A B C, C B A, A B C, ... so that drifts and bursts of load on the machine hit
 * all variants alike and no variant always runs right after the same other one.
 * @param onRep called after each repetition with its samples, in the given variant order
 */
export async function interleaved(
  variants: readonly Variant[],
  reps: number,
  signal: AbortSignal,
  onRep?: (rep: number, samples: ReadonlyMap<string, number>) => void,
): Promise<Samples> {
  const samples: Samples = new Map(variants.map((v) => [v.name, []]));
  for (let rep = 0; rep < reps; rep++) {
    const these = new Map<string, number>();
    const order = rep % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) {
      checkAborted(signal);
      const value = await v.measure();
      samples.get(v.name)!.push(value);
      these.set(v.name, value);
    }
    onRep?.(rep, new Map(variants.map((v) => [v.name, these.get(v.name)!])));
  }
  return samples;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Relative spread (max - min) / median, e.g. 0.05 for 5 %. */
export function spread(values: readonly number[]): number {
  if (values.length < 2) return 0;
  return (Math.max(...values) - Math.min(...values)) / median(values);
}

/** Rounds a rate for the JSON: whole numbers, or 3 significant digits below 100. */
export function roundRate(value: number): number {
  if (!Number.isFinite(value)) return value;
  return Math.abs(value) >= 100 ? Math.round(value) : Number(value.toPrecision(3));
}

export function roundRatio(value: number): number {
  return Number.isFinite(value) ? Math.round(value * 1000) / 1000 : value;
}
