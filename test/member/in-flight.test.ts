/**
 * InFlight: the count "least busy" reads, and waiting for the commands running at one
 * moment while others keep starting (what removeHalfMade relies on).
 */
import { describe, expect, it } from 'vitest';
import { InFlight } from '../../src/member/in-flight.js';

/** Whether a promise has settled, after the microtasks queued so far. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await Promise.resolve();
  await Promise.resolve();
  return done;
}

describe('InFlight', () => {
  it('counts commands in and out', () => {
    const f = new InFlight();
    const a = f.enter();
    const b = f.enter();
    expect(f.count).toBe(2);
    f.leave(a);
    f.leave(b);
    expect(f.count).toBe(0);
  });

  it('drained() resolves at once with nothing running', async () => {
    expect(await settled(new InFlight().drained())).toBe(true);
  });

  it('drained() waits for the commands running when it was called, not for those started after', async () => {
    const f = new InFlight();
    const a = f.enter();
    const b = f.enter();
    const drained = f.drained();
    const c = f.enter(); // started after: not waited for
    f.leave(b);
    expect(await settled(drained)).toBe(false);
    f.leave(a);
    expect(await settled(drained)).toBe(true);
    expect(f.count).toBe(1);
    f.leave(c);
    expect(f.count).toBe(0);
  });

  it('a later drained() also waits for what an earlier one waits for; each resolves when its own commands ended', async () => {
    const f = new InFlight();
    const a = f.enter();
    const first = f.drained();
    const b = f.enter();
    const second = f.drained();
    f.leave(b);
    expect(await settled(second)).toBe(false); // a, from before the first, still runs
    f.leave(a);
    expect(await settled(first)).toBe(true);
    expect(await settled(second)).toBe(true);
    // A third with only a new command running waits for that one alone.
    const c = f.enter();
    const third = f.drained();
    expect(await settled(third)).toBe(false);
    f.leave(c);
    expect(await settled(third)).toBe(true);
  });
});
