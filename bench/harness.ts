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
  /** Prints one line (above the progress bar on a terminal). */
  log(line: string): void;
  /**
   * Moves the progress display on by `seconds` of the plan the family declared in
   * {@link BenchFamily.plannedSeconds} (call it as measured time passes).
   */
  advance(seconds: number): void;
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
  /**
   * About how many seconds the family will take with these settings (measured time plus
   * set-up), for the progress display and its ETA; the family then calls
   * {@link BenchContext.advance} with the same units.
   */
  plannedSeconds(ctx: BenchContext): number;
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
 * Untimed load every measured path gets once, before its first repetition: JIT tiers,
 * session pools and socket buffers settle during the first second or so of load, which a
 * repetition's own short warm-up (250 ms in a quick run) does not cover. Without it the
 * first repetition of the virtual slot ran up to a third slower than the others.
 */
export const SETTLE_MS = 1000;

/** Most rounds of {@link settleUntilSteady} (SETTLE_MS each). */
export const SETTLE_MAX_ROUNDS = 8;
/** A settling round whose rate is at most this much above the round before ends the settling. */
export const SETTLE_TOLERANCE = 0.03;

/**
 * Untimed load in rounds of {@link SETTLE_MS} (a quarter warm-up, then measured, as a
 * quick repetition is) until throughput has stopped climbing: a
 * round's rate at most {@link SETTLE_TOLERANCE} above the round before, or
 * {@link SETTLE_MAX_ROUNDS} rounds. For paths whose warm-up outlasts one SETTLE_MS: over
 * member host processes (the application and two hosts, each with its own JIT, at a few
 * thousand RSA signatures a second) throughput still rose by about a tenth over the first
 * eight seconds, so the first repetitions measured the warm-up, not the steady state.
 * @returns the rate of each round, for the log
 */
export async function settleUntilSteady(measure: (timing: LoopTiming) => Promise<Pick<Measurement, 'rate'>>, signal: AbortSignal): Promise<number[]> {
  const rates: number[] = [];
  while (rates.length < SETTLE_MAX_ROUNDS) {
    checkAborted(signal);
    const { rate } = await measure({ durationMs: SETTLE_MS * 0.75, warmupMs: SETTLE_MS * 0.25, signal });
    rates.push(rate);
    const before = rates[rates.length - 2];
    if (before !== undefined && rate <= before * (1 + SETTLE_TOLERANCE)) break;
  }
  return rates;
}

/** The timing of a settling pass (see {@link SETTLE_MS}). */
export function settleTiming(signal: AbortSignal): LoopTiming {
  return { durationMs: 1, warmupMs: SETTLE_MS, signal };
}

/** One measured run: its rate and the latencies of its operations. */
export interface Measurement {
  /** Operations per second. */
  readonly rate: number;
  /** Median latency of one operation (ms), from its call to its completion. */
  readonly p50Ms: number;
  /** 99th percentile latency (ms). */
  readonly p99Ms: number;
  /** Operations completed in the measured phase. */
  readonly ops: number;
}

/**
 * A growing list of latencies (ms) in a Float64Array: appending costs no allocation per
 * operation, and sorting a typed array is numeric and fast.
 */
export class LatencyLog {
  #values = new Float64Array(4096);
  #length = 0;

  push(ms: number): void {
    if (this.#length === this.#values.length) {
      const bigger = new Float64Array(this.#values.length * 2);
      bigger.set(this.#values);
      this.#values = bigger;
    }
    this.#values[this.#length++] = ms;
  }

  get length(): number {
    return this.#length;
  }

  /** The latencies, sorted ascending (a copy). */
  sorted(): Float64Array {
    return this.#values.slice(0, this.#length).sort();
  }
}

/**
 * The p-th percentile (0 <= p <= 100) of values sorted ascending, interpolated linearly
 * between the two nearest ranks (numpy's default): the 50th of [1, 2, 3, 4] is 2.5.
 * NaN for no values.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0 || !(p >= 0 && p <= 100)) return Number.NaN;
  const rank = (p / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

/** A {@link Measurement} from a count, an elapsed time and the latency log of the phase. */
export function measurement(ops: number, elapsedMs: number, latencies: LatencyLog): Measurement {
  const sorted = latencies.sorted();
  return { rate: elapsedMs > 0 ? ops / (elapsedMs / 1000) : Number.NaN, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), ops };
}

/**
 * One phase of {@link closedLoop}: `concurrency` callers of `op` for `ms` (each awaits its
 * operation, then starts the next), each operation's latency pushed to `latencies`.
 * Operations still in flight at the deadline are awaited and counted, and the elapsed time
 * runs until the last one completes.
 */
export async function closedPhase(
  concurrency: number,
  op: (lane: number) => Promise<unknown>,
  ms: number,
  latencies: LatencyLog,
  signal: AbortSignal,
): Promise<{ ops: number; elapsedMs: number }> {
  const start = performance.now();
  const end = start + ms;
  let ops = 0;
  const lane = async (i: number): Promise<void> => {
    // One clock read per operation ends it and starts the next (the deadline check
    // needs it anyway), so timing adds a single performance.now() per operation.
    let t0 = performance.now();
    while (t0 < end && !signal.aborted) {
      await op(i);
      const t1 = performance.now();
      latencies.push(t1 - t0);
      ops++;
      t0 = t1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, i) => lane(i)));
  return { ops, elapsedMs: performance.now() - start };
}

/**
 * Runs `concurrency` callers of `op` (each awaits its operation, then starts the next)
 * for `warmupMs`, lets them finish, then again for `durationMs`, counting operations and
 * timing each one (see {@link closedPhase}).
 *
 * @param op gets the caller's lane number (0 .. concurrency-1), e.g. to pick its session
 */
export async function closedLoop(concurrency: number, op: (lane: number) => Promise<unknown>, timing: LoopTiming): Promise<Measurement> {
  const { signal } = timing;
  if (timing.warmupMs > 0) await closedPhase(concurrency, op, timing.warmupMs, new LatencyLog(), signal);
  checkAborted(signal);
  const latencies = new LatencyLog();
  const { ops, elapsedMs } = await closedPhase(concurrency, op, timing.durationMs, latencies, signal);
  checkAborted(signal);
  return measurement(ops, elapsedMs, latencies);
}

/**
 * One caller making synchronous calls back to back (the event loop is blocked meanwhile:
 * that is what a sync caller does), each one timed.
 */
export function syncLoop(op: () => unknown, timing: LoopTiming): Measurement {
  const phase = (ms: number, latencies: LatencyLog): { ops: number; elapsedMs: number } => {
    const start = performance.now();
    const end = start + ms;
    let ops = 0;
    let now = start;
    while (now < end) {
      op();
      const t = performance.now();
      latencies.push(t - now);
      ops++;
      now = t;
    }
    return { ops, elapsedMs: now - start };
  };
  if (timing.warmupMs > 0) phase(timing.warmupMs, new LatencyLog());
  checkAborted(timing.signal);
  const latencies = new LatencyLog();
  const { ops, elapsedMs } = phase(timing.durationMs, latencies);
  return measurement(ops, elapsedMs, latencies);
}

/** A thing to measure: returns one sample. */
export interface Variant {
  readonly name: string;
  readonly measure: () => Promise<Measurement> | Measurement;
}

/** Samples of each variant, in repetition order. */
export type Samples = Map<string, Measurement[]>;

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
  onRep?: (rep: number, samples: ReadonlyMap<string, Measurement>) => void,
): Promise<Samples> {
  const samples: Samples = new Map(variants.map((v) => [v.name, []]));
  for (let rep = 0; rep < reps; rep++) {
    const these = new Map<string, Measurement>();
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

/** `12.3k`, `2.19k`, `957`: a rate for log lines. */
export function fmtRate(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v >= 10_000) return `${(v / 1000).toFixed(1)}k`;
  if (v >= 1000) return `${(v / 1000).toFixed(2)}k`;
  return v.toFixed(0);
}

/**
 * Every variant settles once, untimed (see {@link SETTLE_MS}), then all are measured
 * {@link interleaved} for `ctx.reps` repetitions at the run's timing. The progress moves on
 * by SETTLE_MS per variant, then by one run after each measurement; each repetition's rates
 * are logged after `label` (e.g. `overhead/aes-gcm-1k rep 1/3: sync 12.3k | ...`).
 *
 * @param variantsOf the variants at a timing (called for the settling pass and for the run)
 */
export async function settleAndInterleave(
  ctx: Pick<BenchContext, 'reps' | 'durationMs' | 'warmupMs' | 'signal' | 'log' | 'advance'>,
  label: string,
  variantsOf: (timing: LoopTiming) => Variant[],
): Promise<Samples> {
  const perRun = (ctx.warmupMs + ctx.durationMs) / 1000;
  const measures = variantsOf({ durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, signal: ctx.signal });
  for (const v of variantsOf(settleTiming(ctx.signal))) await v.measure();
  ctx.advance((measures.length * SETTLE_MS) / 1000);
  const tracked = measures.map((v): Variant => ({
    name: v.name,
    measure: async () => {
      const m = await v.measure();
      ctx.advance(perRun);
      return m;
    },
  }));
  return interleaved(tracked, ctx.reps, ctx.signal, (rep, these) => {
    ctx.log(`${label} rep ${rep + 1}/${ctx.reps}: ${[...these].map(([n, m]) => `${n} ${fmtRate(m.rate)}`).join(' | ')}`);
  });
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

/** The medians over repetitions of a variant: rate, p50 and p99 each on its own. */
export function summarize(samples: readonly Measurement[]): Measurement {
  return {
    rate: median(samples.map((m) => m.rate)),
    p50Ms: median(samples.map((m) => m.p50Ms)),
    p99Ms: median(samples.map((m) => m.p99Ms)),
    ops: samples.reduce((a, m) => a + m.ops, 0),
  };
}

/** Rounds a latency (ms) for the JSON: 3 significant digits, at most 3 decimals. */
export function roundMs(value: number): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const decimals = Math.min(3, Math.max(0, 2 - Math.floor(Math.log10(Math.abs(value)))));
  return Number(value.toFixed(decimals));
}

/**
 * One result entry, with the ratio computed here so that it is always value / baseline
 * (as BENCH-FORMAT.md says) and rounded like every other entry.
 *
 * @param extra more keys of the entry (e.g. p50Ms, errors); they come after the standard ones
 * @example
 * entry('limit/rsa2048-sign/hosts2', 'ops/s', hosts.rate, limit.rate, { p50Ms: roundMs(hosts.p50Ms) })
 */
export function entry(id: string, unit: BenchResult['unit'], value: number, baseline: number, extra: Readonly<Record<string, unknown>> = {}): BenchResult {
  const round = unit === 'ops/s' ? roundRate : unit === 'ms' ? roundMs : (v: number) => Math.round(v * 100) / 100;
  return { id, unit, value: round(value), baseline: round(baseline), ratio: roundRatio(value / baseline), ...extra };
}

/**
 * The latency fields of an entry measured with a baseline: p50Ms and p99Ms of the value,
 * baselineP50Ms and baselineP99Ms of the baseline (all ms, rounded).
 */
export function latencyFields(value: Pick<Measurement, 'p50Ms' | 'p99Ms'>, baseline?: Pick<Measurement, 'p50Ms' | 'p99Ms'>): Record<string, number> {
  return {
    p50Ms: roundMs(value.p50Ms),
    p99Ms: roundMs(value.p99Ms),
    ...(baseline === undefined ? {} : { baselineP50Ms: roundMs(baseline.p50Ms), baselineP99Ms: roundMs(baseline.p99Ms) }),
  };
}
