import { describe, expect, it } from 'vitest';
import { RecoveryLoop } from '../../src/recovery/recovery-loop.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** A member that recovers on the attempt numbered `healsAt` (1-based), or never. */
function setup(intervalMs: number, maxAttempts: number, healsAt = Infinity) {
  const clock = new FakeClock();
  const attemptsAt: number[] = [];
  let attempts = 0;
  let failed = true;
  let release: (() => void) | undefined;
  let hold = false;
  const loop = new RecoveryLoop({
    intervalMs,
    maxAttempts,
    clock,
    attempt: async () => {
      attemptsAt.push(clock.now());
      if (hold) await new Promise<void>((r) => (release = r));
      attempts++;
      if (attempts >= healsAt) failed = false;
    },
    failedAttempts: () => (failed ? attempts : undefined),
  });
  const flush = () => new Promise<void>((r) => setImmediate(r));
  return { clock, loop, attemptsAt, flush, holdNext: () => (hold = true), release: () => { hold = false; release?.(); } };
}

describe('RecoveryLoop', () => {
  it.each([
    // interval, max attempts, heals at attempt, expected attempt times
    { interval: 100, max: 3, healsAt: Infinity, times: [100, 200, 300] },
    { interval: 100, max: Infinity, healsAt: 5, times: [100, 200, 300, 400, 500] },
    { interval: 250, max: 10, healsAt: 2, times: [250, 500] },
    { interval: 100, max: 0, healsAt: 1, times: [] },
    { interval: 100, max: 1, healsAt: Infinity, times: [100] },
  ])('interval $interval, max $max, heals at $healsAt: attempts at $times', async ({ interval, max, healsAt, times }) => {
    const { clock, loop, attemptsAt, flush } = setup(interval, max, healsAt);
    loop.failed('m', 0);
    for (let i = 0; i < 20; i++) {
      clock.advance(interval);
      await flush();
    }
    expect(attemptsAt).toEqual(times);
  });

  it('schedules one attempt per member however often it is told, and none while one runs', async () => {
    const { clock, loop, attemptsAt, flush, holdNext, release } = setup(100, Infinity, 2);
    expect(loop.failed('m', 0)).toBe(true);
    expect(loop.failed('m', 0)).toBe(false);
    holdNext();
    clock.advance(100);
    await flush();
    expect(loop.busy('m')).toBe(true);
    expect(loop.failed('m', 0)).toBe(false);
    expect(await loop.run('m')).toBe(false); // a manual attempt does not run beside it
    release();
    await flush();
    clock.advance(100);
    await flush();
    expect(attemptsAt).toEqual([100, 200]);
    expect(loop.busy('m')).toBe(false);
  });

  it('a manual run cancels the scheduled attempt and runs at once', async () => {
    const { clock, loop, attemptsAt, flush } = setup(1000, Infinity, 1);
    loop.failed('m', 0);
    clock.advance(10);
    expect(await loop.run('m')).toBe(true);
    clock.advance(5000);
    await flush();
    expect(attemptsAt).toEqual([10]);
    expect(clock.pending).toBe(0);
  });

  it('close cancels scheduled attempts and refuses new ones', async () => {
    const { clock, loop, attemptsAt, flush } = setup(100, Infinity);
    loop.failed('m', 0);
    loop.close();
    expect(loop.failed('n', 0)).toBe(false);
    clock.advance(1000);
    await flush();
    expect(attemptsAt).toEqual([]);
    expect(clock.pending).toBe(0);
  });
});
