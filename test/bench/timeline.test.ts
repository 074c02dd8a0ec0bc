/**
 * The pure part of the failover benchmark: completions counted into 100 ms buckets aligned
 * on the fault, the pre-fault reference, and the time until throughput is back to a
 * fraction of it (sustained), on made-up completion times. No process, no clock.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isStoppedChild } from '../../bench/failover.js';
import { analyzeFailover, bucketize, firstSustained, lowestRateBetween } from '../../bench/timeline.js';

/** Completion times at a steady `perSecond` from `from` to `to` (ms), evenly spaced. */
function steady(from: number, to: number, perSecond: number): number[] {
  const out: number[] = [];
  const step = 1000 / perSecond;
  for (let t = from + step / 2; t < to; t += step) out.push(t);
  return out;
}

describe('bucketize', () => {
  it('counts times into half-open buckets and leaves out what falls outside', () => {
    expect(bucketize([0, 99.9, 100, 250, 399.99, 400, -1], 0, 100, 4)).toEqual([2, 1, 1, 1]);
  });

  it('works with unsorted input and an offset start', () => {
    expect(bucketize([1250, 1010, 1110, 1001], 1000, 100, 3)).toEqual([2, 1, 1]);
  });

  it('refuses a bucket width that is not positive', () => {
    expect(() => bucketize([1], 0, 0, 1)).toThrow(RangeError);
  });

  it('never loses a time that falls inside the buckets', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 999.999, noNaN: true }), { maxLength: 200 }), (times) => {
        expect(bucketize(times, 0, 100, 10).reduce((a, c) => a + c, 0)).toBe(times.length);
      }),
    );
  });
});

describe('firstSustained', () => {
  it('finds the first run of `sustain` values at or above the threshold, from an index', () => {
    const values = [10, 2, 10, 10, 3, 10, 10, 10];
    expect(firstSustained(values, 0, 5, 1)).toBe(0);
    expect(firstSustained(values, 1, 5, 2)).toBe(2);
    expect(firstSustained(values, 1, 5, 3)).toBe(5);
    expect(firstSustained(values, 0, 11, 1)).toBe(-1);
    expect(firstSustained(values, 6, 5, 3)).toBe(-1); // runs off the end
  });
});

describe('analyzeFailover', () => {
  const base = { loadStartMs: 1000, bucketMs: 100, preFaultMs: 1000, fraction: 2 / 3 } as const;

  it('aligns buckets on the fault and takes the pre-fault window as the reference', () => {
    // Fault at 2537 ms: bucket boundaries at 2537 - k x 100; 15 whole buckets before it.
    const completions = [...steady(1000, 2537, 1000), ...steady(2537, 4037, 1000)];
    const t = analyzeFailover({ ...base, completions, faultAtMs: 2537, endMs: 4037 });
    expect(t.startMs).toBe(1037);
    expect(t.faultIndex).toBe(15);
    expect(t.rates).toHaveLength(30);
    expect(t.preFaultRate).toBeCloseTo(1000, 0);
    expect(t.threshold).toBeCloseTo(2000 / 3, 0);
    // Never dipped: back at the end of the first bucket after the fault.
    expect(t.recoverMs).toBe(100);
  });

  it('counts from the fault to the end of the first bucket of a sustained recovery', () => {
    // 1000/s, a stall of 450 ms after the fault at 2000, then 700/s (above 2/3), with one good blip inside the stall.
    const completions = [...steady(1000, 2000, 1000), ...steady(2150, 2160, 1000), ...steady(2450, 4000, 700)];
    const t = analyzeFailover({ ...base, completions, faultAtMs: 2000, endMs: 4000, sustain: 3 });
    expect(t.faultIndex).toBe(10);
    // Buckets 2000-2100: 0, 2100-2200: 10/s, 2200-2300: 0, 2300-2400: 0, 2400-2500: ~350/s, 2500-2600: 700/s ...
    expect(t.recoverMs).toBe(600);
    expect(t.dipRate).toBe(0);
  });

  it('says undefined when throughput never comes back, and keeps the lowest bucket', () => {
    const completions = [...steady(1000, 2000, 1000), ...steady(2000, 3000, 300)];
    const t = analyzeFailover({ ...base, completions, faultAtMs: 2000, endMs: 3000 });
    expect(t.recoverMs).toBeUndefined();
    expect(t.dipRate).toBeCloseTo(300, -1);
  });

  it('drops a last partial bucket (it would read as a dip)', () => {
    const completions = steady(1000, 2550, 1000);
    const t = analyzeFailover({ ...base, completions, faultAtMs: 2000, endMs: 2550 });
    expect(t.rates).toHaveLength(15);
    expect(t.rates.every((r) => r > 900)).toBe(true);
  });

  it('uses only the pre-fault window for the reference, not the warm-up before it', () => {
    // A slow warm-up (200/s for 1 s), then 1000/s for the 1 s window before the fault.
    const completions = [...steady(1000, 2000, 200), ...steady(2000, 3000, 1000), ...steady(3000, 3500, 1000)];
    const t = analyzeFailover({ ...base, completions, faultAtMs: 3000, endMs: 3500 });
    expect(t.preFaultRate).toBeCloseTo(1000, 0);
  });

  it('has no reference when the fault comes before one whole bucket', () => {
    const t = analyzeFailover({ ...base, completions: steady(1000, 1500, 1000), faultAtMs: 1050, endMs: 1500 });
    expect(t.preFaultRate).toBeNaN();
    expect(t.recoverMs).toBeUndefined();
  });

  it('refuses a fraction outside (0, 1]', () => {
    expect(() => analyzeFailover({ ...base, completions: [], faultAtMs: 2000, endMs: 3000, fraction: 0 })).toThrow(RangeError);
    expect(() => analyzeFailover({ ...base, completions: [], faultAtMs: 2000, endMs: 3000, fraction: 1.5 })).toThrow(RangeError);
  });

  it('a recovery time is always whole buckets of at least one, and the back bucket and the ones after it hold', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(40), { minLength: 12, maxLength: 40 }), fc.integer({ min: 1, max: 4 }), (counts, sustain) => {
        // Completions in the middle of 100 ms buckets from 0; the fault at 1000 ms (bucket 10).
        const completions = counts.flatMap((c, i) => Array.from({ length: c }, () => i * 100 + 50));
        const t = analyzeFailover({ completions, loadStartMs: 0, faultAtMs: 1000, endMs: counts.length * 100, preFaultMs: 1000, fraction: 2 / 3, sustain });
        if (t.recoverMs === undefined) return;
        expect(t.recoverMs % 100).toBe(0);
        expect(t.recoverMs).toBeGreaterThanOrEqual(100);
        const first = t.faultIndex + t.recoverMs / 100 - 1;
        for (let i = first; i < first + sustain; i++) expect(t.rates[i]!).toBeGreaterThanOrEqual(t.threshold);
      }),
    );
  });
});

describe('isStoppedChild (never signal a pid that is not a stopped child of ours)', () => {
  const stat = (comm: string, state: string, ppid: number) => (): string => `4242 (${comm}) ${state} ${ppid} 4242 4242 0 -1 4194560`;

  it('is true only for a stopped process whose parent is this process', () => {
    expect(isStoppedChild(4242, stat('node', 'T', process.pid))).toBe(true);
    expect(isStoppedChild(4242, stat('node', 't', process.pid))).toBe(true);
    expect(isStoppedChild(4242, stat('node', 'S', process.pid))).toBe(false);
    expect(isStoppedChild(4242, stat('node', 'T', process.pid + 1))).toBe(false);
    expect(isStoppedChild(4242, () => undefined)).toBe(false);
  });

  it('reads state and parent after the command name, whatever it holds', () => {
    expect(isStoppedChild(4242, stat('a b) S 1 (c', 'T', process.pid))).toBe(true);
  });
});

describe('lowestRateBetween', () => {
  const timeline = { startMs: 1000, bucketMs: 100, rates: [50, 40, 30, 45, 60] };
  it('takes the buckets that overlap the span, partly covered ones included', () => {
    expect(lowestRateBetween(timeline, 1150, 1210)).toBe(30);
    expect(lowestRateBetween(timeline, 1300, 1499)).toBe(45);
    expect(lowestRateBetween(timeline, 1000, 1000)).toBe(50);
  });
  it('clips the span to the timeline; NaN when nothing is left', () => {
    expect(lowestRateBetween(timeline, 0, 1050)).toBe(50);
    expect(lowestRateBetween(timeline, 1420, 9000)).toBe(60);
    expect(lowestRateBetween(timeline, 2000, 3000)).toBeNaN();
    expect(lowestRateBetween(timeline, 1300, 1200)).toBeNaN();
  });
});
