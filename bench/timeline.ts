/**
 * Throughput over time in fixed buckets, and how long it takes to come back after a fault:
 * the pure part of the failover benchmark (bench/failover.ts), kept apart so it can be
 * tested without starting a process.
 *
 * Times are milliseconds on one monotonic clock (`performance.now()` in the benchmark).
 * Buckets are aligned on the fault: the fault time is a bucket boundary, so the first
 * bucket after it holds only post-fault completions and the pre-fault window only
 * pre-fault ones.
 */

/** Inputs of {@link analyzeFailover}. */
export interface FailoverTimelineInput {
  /** Completion time of every successful operation (any order). */
  readonly completions: ArrayLike<number>;
  /** When the load started (its warm-up included). */
  readonly loadStartMs: number;
  /** When the fault was injected. */
  readonly faultAtMs: number;
  /** When the load stopped; a last partial bucket is dropped. */
  readonly endMs: number;
  /** Bucket width. @default 100 */
  readonly bucketMs?: number;
  /** The window right before the fault whose mean throughput is the reference. */
  readonly preFaultMs: number;
  /** Back means at least this fraction of the pre-fault throughput, e.g. (n-1)/n = 2/3. */
  readonly fraction: number;
  /**
   * Buckets in a row that must all be at or above the threshold for throughput to count
   * as back (one good bucket right after a fault can be the tail of pre-fault work). @default 3
   */
  readonly sustain?: number;
}

/** What {@link analyzeFailover} found. */
export interface FailoverTimeline {
  readonly bucketMs: number;
  /** Time of the start of bucket 0 (at or after the load start, so that the fault is a boundary). */
  readonly startMs: number;
  /** Throughput of each whole bucket, in operations per second. */
  readonly rates: number[];
  /** Index of the first bucket after the fault (its start is the fault time). */
  readonly faultIndex: number;
  /** Mean throughput (ops/s) over the pre-fault window. NaN when the window holds no bucket. */
  readonly preFaultRate: number;
  /** `fraction` x `preFaultRate`. */
  readonly threshold: number;
  /** Lowest bucket throughput from the fault until throughput was back (or the end). */
  readonly dipRate: number;
  /**
   * Milliseconds from the fault to the END of the first bucket of the first `sustain`
   * buckets in a row at or above the threshold (so at least one bucket width); undefined
   * when throughput never came back within the timeline.
   */
  readonly recoverMs: number | undefined;
}

/**
 * Counts `times` into `count` buckets of `bucketMs` from `startMs`; times outside
 * [startMs, startMs + count x bucketMs) are left out.
 */
export function bucketize(times: ArrayLike<number>, startMs: number, bucketMs: number, count: number): number[] {
  if (!(bucketMs > 0)) throw new RangeError(`bucketMs must be positive, got ${bucketMs}`);
  const counts = new Array<number>(Math.max(0, count)).fill(0);
  for (let i = 0; i < times.length; i++) {
    const index = Math.floor((times[i]! - startMs) / bucketMs);
    if (index >= 0 && index < counts.length) counts[index]!++;
  }
  return counts;
}

/**
 * The first index `i >= from` such that `values[i .. i + sustain - 1]` are all at or
 * above `threshold`, or -1.
 */
export function firstSustained(values: readonly number[], from: number, threshold: number, sustain: number): number {
  let run = 0;
  for (let i = Math.max(0, from); i < values.length; i++) {
    run = values[i]! >= threshold ? run + 1 : 0;
    if (run >= sustain) return i - sustain + 1;
  }
  return -1;
}

/**
 * The lowest throughput of the buckets of `timeline` that overlap [fromMs, toMs], or NaN
 * when none does (e.g. the span lies outside the timeline).
 */
export function lowestRateBetween(timeline: Pick<FailoverTimeline, 'rates' | 'startMs' | 'bucketMs'>, fromMs: number, toMs: number): number {
  const first = Math.max(0, Math.floor((fromMs - timeline.startMs) / timeline.bucketMs));
  const last = Math.min(timeline.rates.length - 1, Math.floor((toMs - timeline.startMs) / timeline.bucketMs));
  let lowest = Number.NaN;
  for (let i = first; i <= last; i++) if (!(timeline.rates[i]! >= lowest)) lowest = timeline.rates[i]!;
  return lowest;
}

/**
 * Buckets a failover run and finds when throughput was back to `fraction` of what it was
 * before the fault.
 */
export function analyzeFailover(input: FailoverTimelineInput): FailoverTimeline {
  const bucketMs = input.bucketMs ?? 100;
  const sustain = Math.max(1, Math.floor(input.sustain ?? 3));
  if (!(bucketMs > 0)) throw new RangeError(`bucketMs must be positive, got ${bucketMs}`);
  if (!(input.fraction > 0 && input.fraction <= 1)) throw new RangeError(`fraction must be in (0, 1], got ${input.fraction}`);
  // Whole buckets between the load start and the fault, so the fault falls on a boundary.
  const faultIndex = Math.max(0, Math.floor((input.faultAtMs - input.loadStartMs) / bucketMs));
  const startMs = input.faultAtMs - faultIndex * bucketMs;
  const count = Math.max(0, Math.floor((input.endMs - startMs) / bucketMs));
  const perSecond = 1000 / bucketMs;
  const rates = bucketize(input.completions, startMs, bucketMs, count).map((c) => c * perSecond);

  const preBuckets = Math.min(faultIndex, Math.max(0, Math.floor(input.preFaultMs / bucketMs)));
  const pre = rates.slice(faultIndex - preBuckets, Math.min(faultIndex, rates.length));
  const preFaultRate = pre.length === 0 ? Number.NaN : pre.reduce((a, v) => a + v, 0) / pre.length;
  const threshold = input.fraction * preFaultRate;

  const back = Number.isFinite(threshold) ? firstSustained(rates, faultIndex, threshold, sustain) : -1;
  const after = rates.slice(faultIndex, back < 0 ? rates.length : back + 1);
  const dipRate = after.length === 0 ? Number.NaN : Math.min(...after);
  return {
    bucketMs,
    startMs,
    rates,
    faultIndex,
    preFaultRate,
    threshold,
    dipRate,
    recoverMs: back < 0 ? undefined : (back - faultIndex + 1) * bucketMs,
  };
}
