/**
 * The soak's arithmetic (RSS growth between quarters, the chart's series) and the plain
 * progress lines shown when stdout is not a terminal. No time passes: clocks are given.
 */
import { describe, expect, it } from 'vitest';
import { downsample, rssGrowth, soakPlan } from '../../bench/soak.js';
import { formatDuration, plainProgress } from '../../bench/progress.js';

const MIB = 1024 * 1024;

describe('soak', () => {
  it('growth compares the mean RSS of the first and the last quarter by time', () => {
    // 100 s: 100 MiB for the first 25 s, 105 MiB from 75 s on, something else between.
    const samples = Array.from({ length: 100 }, (_, t) => ({ t, rss: (t < 25 ? 100 : t >= 75 ? 105 : 300) * MIB }));
    const g = rssGrowth(samples, 100);
    expect(g.growthPct).toBeCloseTo(5, 9);
    expect(g.firstMean / MIB).toBeCloseTo(100, 9);
    expect(g.lastMean / MIB).toBeCloseTo(105, 9);
  });

  it('a shrinking process has negative growth; no samples give NaN', () => {
    expect(rssGrowth([{ t: 0, rss: 200 }, { t: 99, rss: 150 }], 100).growthPct).toBeCloseTo(-25, 9);
    expect(rssGrowth([], 100).growthPct).toBeNaN();
  });

  it('downsamples to at most the points asked, in MiB, skipping empty spans', () => {
    const samples = Array.from({ length: 480 }, (_, i) => ({ t: i * 250, rss: (100 + i / 48) * MIB }));
    const points = downsample(samples, 120_000, 60);
    expect(points).toHaveLength(60);
    expect(points[0]).toBeCloseTo(100.07, 1);
    expect(points[59]).toBeCloseTo(109.9, 1);
    expect(downsample([{ t: 0, rss: MIB }], 1000, 60)).toEqual([1]);
  });

  it('the full soak lasts at least 2 minutes and a million operations; the quick one is short', () => {
    expect(soakPlan(false)).toMatchObject({ minMs: 120_000, minOps: 1_000_000 });
    expect(soakPlan(true).minMs).toBeLessThan(60_000);
  });
});

describe('plain progress (stdout not a terminal)', () => {
  it('prints one line per tenth crossed, with an estimate from the rate so far', () => {
    const lines: string[] = [];
    let now = 0;
    const p = plainProgress(100, (l) => lines.push(l), () => now);
    p.phase('overhead/');
    now = 5_000;
    p.advance(5); // 5 %: nothing yet
    now = 10_000;
    p.advance(5); // 10 %
    now = 40_000;
    p.advance(30); // 40 %: one line for the crossing, not one per tenth
    p.log('a log line');
    p.advance(60); // 100 %: the run's own end says so
    p.stop();
    p.advance(1);
    expect(lines).toEqual(['progress 10 % (about 1 min 30 s left), overhead/', 'progress 40 % (about 1 min left), overhead/', 'a log line']);
  });

  it.each([
    [0, '0 s'],
    [59.6, '1 min'],
    [95, '1 min 35 s'],
    [240, '4 min'],
  ])('formatDuration(%f) = %s', (s, text) => expect(formatDuration(s)).toBe(text));
});
