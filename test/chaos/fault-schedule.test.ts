import { describe, expect, it } from 'vitest';
import { countByKind, faultSchedule, INJECTED_CODES } from '../../chaos/fault-schedule.js';

describe('faultSchedule', () => {
  it('gives the same faults for the same seed, and other faults for another seed', () => {
    const a = faultSchedule(1, 300_000);
    expect(faultSchedule(1, 300_000)).toEqual(a);
    expect(faultSchedule(2, 300_000)).not.toEqual(a);
    expect(a.length).toBeGreaterThan(100);
  });

  it('keeps faults in time order, inside the run, on existing members', () => {
    for (const seed of [1, 7, 42]) {
      const faults = faultSchedule(seed, 60_000);
      const times = faults.map((f) => f.atMs);
      expect(times).toEqual([...times].sort((x, y) => x - y));
      expect(Math.min(...times)).toBeGreaterThanOrEqual(1500);
      expect(Math.max(...times)).toBeLessThanOrEqual(58_000);
      for (const f of faults) expect([0, 1, 2, 3]).toContain(f.member);
    }
  });

  it('restarts the group from its journal exactly once, and uses every kind in a long run', () => {
    const counts = countByKind(faultSchedule(1, 300_000));
    expect(counts.groupRestart).toBe(1);
    for (const kind of ['kill', 'stop', 'restart', 'slow', 'error'] as const) expect(counts[kind]).toBeGreaterThan(5);
    expect(countByKind(faultSchedule(3, 20_000)).groupRestart).toBe(1);
  });

  it('injects member-class codes with a count, or an ambiguous code on every command for a while', () => {
    for (const f of faultSchedule(5, 300_000)) {
      if (f.kind !== 'error') continue;
      if (f.count === undefined) {
        expect(f.ckr).toBe('CKR_GENERAL_ERROR');
        expect(f.ops).toBeUndefined();
      } else {
        expect(INJECTED_CODES).toContain(f.ckr);
      }
    }
  });
});
