/**
 * The short seeded chaos run of CI: 20 s of mixed load over 3 active + 1 standby member
 * hosts under the seeded faults, then every invariant (docs/reliability.md). The long run
 * is `npm run chaos -- --duration 300 --seed 1`.
 */
import { describe, expect, it } from 'vitest';
import { invariantLines, runChaos } from '../../chaos/chaos-run.js';
import { INVARIANTS } from '../../chaos/invariants.js';

describe('chaos run (seed 1, 20 s)', () => {
  it('loses nothing: no failed operation, every invariant held', async () => {
    const result = await runChaos({ durationS: 20, seed: 1 });
    // What a breach looks like, readable from the test's output alone.
    const report = [...invariantLines(result), ...result.failures.filter((f) => f.counted).slice(0, 10).map((f) => `  ${f.atMs} ms ${f.op}: ${f.code}: ${f.message}`)].join('\n');
    expect(result.operations, report).toBeGreaterThan(200);
    expect(result.faults, report).toBeGreaterThan(1);
    expect(result.faultsByKind.groupRestart, report).toBe(1);
    expect(result.errors, report).toBe(0);
    expect(Object.fromEntries(INVARIANTS.map((n) => [n, result.invariants[n]])), report).toEqual(Object.fromEntries(INVARIANTS.map((n) => [n, 'held'])));
  }, 150_000);
});
