/**
 * The scheduler comparison's pure parts: each member's share of the operations, and the
 * switching scheduler that lets one group serve both strategies (it must pick exactly as
 * the strategy in use, and keep peak-EWMA informed whichever picks).
 */
import { describe, expect, it } from 'vitest';
import { shares, SwitchingScheduler } from '../../bench/hetero.js';
import { LeastBusyScheduler } from '../../src/routing/least-busy-scheduler.js';
import { FakeClock } from '../helpers/fake-clock.js';

describe('shares', () => {
  it('gives each member its fraction and the largest distance from an even split', () => {
    const s = shares([45, 45, 10]);
    expect(s.shares).toEqual([0.45, 0.45, 0.1]);
    expect(s.maxDeviation).toBeCloseTo(1 / 3 - 0.1, 10);
    expect(shares([5, 5, 5]).maxDeviation).toBeCloseTo(0, 10);
  });

  it('says NaN when nothing was served', () => {
    expect(shares([0, 0]).shares.every(Number.isNaN)).toBe(true);
    expect(shares([]).maxDeviation).toBeNaN();
  });
});

describe('SwitchingScheduler', () => {
  const candidates = [
    { index: 0, outstanding: 3 },
    { index: 1, outstanding: 0 },
    { index: 2, outstanding: 3 },
  ];

  it('picks as least-busy by default, and names the strategy in use', () => {
    const s = new SwitchingScheduler();
    const reference = new LeastBusyScheduler();
    expect(s.name).toBe('least-busy');
    for (let i = 0; i < 5; i++) expect(s.pick(candidates)).toBe(reference.pick(candidates));
  });

  it('feeds peak-EWMA every latency, even while least-busy picks, and picks with it once switched', () => {
    const clock = new FakeClock();
    const s = new SwitchingScheduler(clock);
    s.observe(0, 5, true);
    s.observe(1, 100, true);
    s.observe(2, 5, true);
    expect(s.peakEwma.estimate(1)).toBe(100);
    s.use('peak-ewma');
    expect(s.name).toBe('peak-ewma');
    // Member 1 is idle but 20x slower: peak-EWMA passes it over, least-busy would take it.
    const idle = candidates.map((c) => ({ ...c, outstanding: c.index === 1 ? 0 : 1 }));
    for (let i = 0; i < 6; i++) expect(s.pick(idle)!.index).not.toBe(1);
    s.use('least-busy');
    expect(s.pick(idle)!.index).toBe(1);
  });
});
