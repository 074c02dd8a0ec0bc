/**
 * The pure parts of the bench harness: percentiles, medians, the latency log, result
 * entries whose ratio is always value / baseline, and the settle-then-interleave sequence.
 * Nothing here is timed but one closed phase of 20 ms.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BenchAborted, closedPhase, entry, fmtRate, LatencyLog, latencyFields, measurement, median, percentile, roundMs, roundRate, SETTLE_MAX_ROUNDS, SETTLE_MS, settleAndInterleave, settleUntilSteady, spread, summarize, type LoopTiming, type Measurement } from '../../bench/harness.js';

describe('percentile', () => {
  it.each([
    { values: [1, 2, 3, 4], p: 50, expected: 2.5 },
    { values: [1, 2, 3, 4, 5], p: 50, expected: 3 },
    { values: [5], p: 99, expected: 5 },
    { values: [0, 10], p: 99, expected: 9.9 },
    { values: [1, 2, 3, 4], p: 0, expected: 1 },
    { values: [1, 2, 3, 4], p: 100, expected: 4 },
    { values: Array.from({ length: 101 }, (_, i) => i), p: 99, expected: 99 },
    { values: [], p: 50, expected: Number.NaN },
    { values: [1, 2], p: 101, expected: Number.NaN },
  ])('the $p th of $values is $expected', ({ values, p, expected }) => {
    if (Number.isNaN(expected)) expect(percentile(values, p)).toBeNaN();
    else expect(percentile(values, p)).toBeCloseTo(expected, 12);
  });

  it('lies between the smallest and the largest value, and grows with p', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 200 }), fc.double({ min: 0, max: 100, noNaN: true }), fc.double({ min: 0, max: 100, noNaN: true }), (xs, p, q) => {
        const sorted = [...xs].sort((a, b) => a - b);
        const v = percentile(sorted, p);
        expect(v).toBeGreaterThanOrEqual(sorted[0]!);
        expect(v).toBeLessThanOrEqual(sorted[sorted.length - 1]!);
        const [lo, hi] = p <= q ? [p, q] : [q, p];
        expect(percentile(sorted, lo)).toBeLessThanOrEqual(percentile(sorted, hi) + 1e-9);
      }),
    );
  });

  it('at 50 is the median', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: 1, maxLength: 50 }), (xs) => {
        expect(percentile([...xs].sort((a, b) => a - b), 50)).toBeCloseTo(median(xs), 9);
      }),
    );
  });
});

describe('median and spread', () => {
  it.each([
    { values: [3, 1, 2], median: 2, spread: 1 },
    { values: [4, 1, 3, 2], median: 2.5, spread: 1.2 },
    { values: [7], median: 7, spread: 0 },
  ])('$values: median $median, spread $spread', (c) => {
    expect(median(c.values)).toBe(c.median);
    expect(spread(c.values)).toBeCloseTo(c.spread, 12);
  });
  it('of nothing is NaN', () => expect(median([])).toBeNaN());
});

describe('LatencyLog and measurement', () => {
  it('keeps every value past its first capacity and sorts them numerically', () => {
    const log = new LatencyLog();
    const values = Array.from({ length: 10_000 }, (_, i) => (i * 7919) % 10_000);
    for (const v of values) log.push(v / 100);
    expect(log.length).toBe(10_000);
    const sorted = log.sorted();
    expect(sorted[0]).toBe(0);
    expect(sorted[9999]).toBe(99.99);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!).toBeGreaterThanOrEqual(sorted[i - 1]!);
  });

  it('turns a count, a time and latencies into a rate with p50 and p99', () => {
    const log = new LatencyLog();
    for (let i = 1; i <= 100; i++) log.push(i);
    const m = measurement(500, 2000, log);
    expect(m).toEqual({ rate: 250, p50Ms: 50.5, p99Ms: percentile(log.sorted(), 99), ops: 500 });
  });

  it('summarizes repetitions by the median of each figure', () => {
    const s = summarize([
      { rate: 10, p50Ms: 1, p99Ms: 9, ops: 1 },
      { rate: 30, p50Ms: 3, p99Ms: 5, ops: 2 },
      { rate: 20, p50Ms: 2, p99Ms: 7, ops: 3 },
    ]);
    expect(s).toEqual({ rate: 20, p50Ms: 2, p99Ms: 7, ops: 6 });
  });
});

describe('result entries', () => {
  it.each([
    { unit: 'ops/s' as const, value: 20628.4, baseline: 29997.2, expected: { value: 20628, baseline: 29997, ratio: 0.688 } },
    { unit: 'ms' as const, value: 38.1749, baseline: 24.2911, expected: { value: 38.2, baseline: 24.3, ratio: 1.572 } },
    { unit: '%' as const, value: 2.345, baseline: 100, expected: { value: 2.35, baseline: 100, ratio: 0.023 } },
    { unit: 'ops/s' as const, value: 57.123, baseline: 60, expected: { value: 57.1, baseline: 60, ratio: 0.952 } },
  ])('$unit $value / $baseline', ({ unit, value, baseline, expected }) => {
    expect(entry('x/y', unit, value, baseline)).toEqual({ id: 'x/y', unit, ...expected });
  });

  it('has ratio = value / baseline to 3 decimals, whatever the figures', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.001, max: 1e7, noNaN: true }), fc.double({ min: 0.001, max: 1e7, noNaN: true }), fc.constantFrom('ops/s' as const, 'ms' as const), (v, b, unit) => {
        const e = entry('a/b', unit, v, b);
        expect(Math.abs(e.ratio - v / b)).toBeLessThanOrEqual(0.0005 + 1e-12);
      }),
    );
  });

  it('keeps extra fields after the standard ones', () => {
    const e = entry('limit/rsa2048-sign/baseline', 'ops/s', 4000, 2000, { ...latencyFields({ p50Ms: 0.51234, p99Ms: 12.345 }, { p50Ms: 0.0004567, p99Ms: 3 }), processes: 2 });
    expect(Object.keys(e)).toEqual(['id', 'unit', 'value', 'baseline', 'ratio', 'p50Ms', 'p99Ms', 'baselineP50Ms', 'baselineP99Ms', 'processes']);
    expect(e).toMatchObject({ ratio: 2, p50Ms: 0.512, p99Ms: 12.3, baselineP50Ms: 0, baselineP99Ms: 3, processes: 2 });
  });

  it.each([
    [0.0123456, 0.012],
    [1.23456, 1.23],
    [12.3456, 12.3],
    [206.15, 206],
    [0, 0],
  ])('roundMs(%f) = %f', (v, r) => expect(roundMs(v)).toBe(r));

  it.each([
    [29997.4, 29997],
    [57.123, 57.1],
  ])('roundRate(%f) = %f', (v, r) => expect(roundRate(v)).toBe(r));
});

describe('settleUntilSteady', () => {
  const rounds = (rates: number[]) => {
    const asked: LoopTiming[] = [];
    let i = 0;
    const measure = async (timing: LoopTiming) => {
      asked.push(timing);
      return { rate: rates[Math.min(i++, rates.length - 1)]! };
    };
    return { measure, asked };
  };

  it('runs rounds of SETTLE_MS (a quarter warm-up) until a round is no more than 3 % above the one before', async () => {
    const { measure, asked } = rounds([2700, 2900, 3100, 3150, 3600]);
    expect(await settleUntilSteady(measure, new AbortController().signal)).toEqual([2700, 2900, 3100, 3150]);
    expect(asked.every((t) => t.durationMs === SETTLE_MS * 0.75 && t.warmupMs === SETTLE_MS * 0.25)).toBe(true);
  });

  it('stops at once when throughput falls, and after SETTLE_MAX_ROUNDS when it keeps climbing', async () => {
    expect(await settleUntilSteady(rounds([3000, 2800]).measure, new AbortController().signal)).toEqual([3000, 2800]);
    const climbing = Array.from({ length: 20 }, (_, i) => 1000 * 1.1 ** i);
    expect(await settleUntilSteady(rounds(climbing).measure, new AbortController().signal)).toHaveLength(SETTLE_MAX_ROUNDS);
  });

  it('stops when aborted', async () => {
    const abort = new AbortController();
    abort.abort();
    await expect(settleUntilSteady(rounds([1, 2, 3]).measure, abort.signal)).rejects.toBeInstanceOf(BenchAborted);
  });
});

describe('settleAndInterleave', () => {
  it('settles every variant once with the settling timing, then interleaves the run, advancing and logging each repetition', async () => {
    const calls: string[] = [];
    const advanced: number[] = [];
    const lines: string[] = [];
    const ctx = { reps: 2, durationMs: 3000, warmupMs: 1000, signal: new AbortController().signal, log: (l: string) => lines.push(l), advance: (s: number) => advanced.push(s) };
    const sample = (rate: number): Measurement => ({ rate, p50Ms: 1, p99Ms: 2, ops: rate });
    const samples = await settleAndInterleave(ctx, 'fam/op', (t) => [
      { name: 'a', measure: () => (calls.push(`a ${t.warmupMs}/${t.durationMs}`), sample(1500)) },
      { name: 'b', measure: async () => (calls.push(`b ${t.warmupMs}/${t.durationMs}`), sample(20_000)) },
    ]);
    expect(calls).toEqual([`a ${SETTLE_MS}/1`, `b ${SETTLE_MS}/1`, 'a 1000/3000', 'b 1000/3000', 'b 1000/3000', 'a 1000/3000']);
    expect(advanced).toEqual([(2 * SETTLE_MS) / 1000, 4, 4, 4, 4]);
    expect(lines).toEqual(['fam/op rep 1/2: a 1.50k | b 20.0k', 'fam/op rep 2/2: a 1.50k | b 20.0k']);
    expect(samples.get('a')!.map((m) => m.rate)).toEqual([1500, 1500]);
  });
});

describe('closedPhase', () => {
  it('runs every lane until the deadline, one latency per operation', async () => {
    const latencies = new LatencyLog();
    const lanes = new Set<number>();
    const { ops, elapsedMs } = await closedPhase(3, async (lane) => lanes.add(lane), 20, latencies, new AbortController().signal);
    expect(ops).toBeGreaterThan(0);
    expect(latencies.length).toBe(ops);
    expect([...lanes].sort()).toEqual([0, 1, 2]);
    expect(elapsedMs).toBeGreaterThanOrEqual(20);
  });

  it('does nothing once aborted', async () => {
    const abort = new AbortController();
    abort.abort();
    expect((await closedPhase(2, async () => undefined, 1000, new LatencyLog(), abort.signal)).ops).toBe(0);
  });
});

it.each([
  [957.4, '957'],
  [2190, '2.19k'],
  [12_345, '12.3k'],
])('fmtRate(%f) = %s', (v, text) => expect(fmtRate(v)).toBe(text));
