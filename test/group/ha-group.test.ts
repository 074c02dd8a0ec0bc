/**
 * HaGroup as a whole on real SoftHSM2 tokens: a round trip through the virtual slot, and
 * close/removeMember when a member hangs or a recovery attempt is under way.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { loadedModuleCount } from '../../src/pkcs11/module-registry.js';
import { internalsOf } from '../../src/testing.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { faultGroups, INTERVAL_MS, states } from '../helpers/fault-group.js';
import { hostPid } from '../helpers/host-pid.js';

const fx = faultGroups({ prefix: 't' });

/** True when `p` settles within `ms` of real time (a bound for a real frozen process, not a sleep). */
const settledWithin = async (p: Promise<unknown>, ms: number): Promise<boolean> =>
  Promise.race([p.then(() => true, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describe('HaGroup over 3 SoftHSM2 tokens', () => {
  it('encrypts on one member and decrypts on each other', async () => {
    const group = fx.track(await HaGroup.open({ members: fx.bed.memberConfigs() }));
    const session = group.slot.openSession();
    await session.login(fx.bed.tokens[0]!.userPin);
    const [key] = await session.findObjects({ label: 't-aes' });
    expect(key).toBeDefined();
    const iv = randomBytes(12);
    const ct = await session.encrypt({ name: 'AES_GCM', iv }, key!, Buffer.from('hello'));
    const pt = await session.decrypt({ name: 'AES_GCM', iv }, key!, ct);
    expect(pt.toString()).toBe('hello');
    expect(states(group)).toEqual(['active', 'active', 'active']);
  });
});

describe('close and removeMember on a hung member', () => {
  it('removeMember returns when the member hangs (idle pooled sessions cannot be closed)', async () => {
    const h = await fx.open();
    const session = h.group.slot.openSession();
    await session.login(fx.bed.tokens[0]!.userPin);
    await session.generateRandom(8); // the pools hold idle sessions now
    h.faults[0]!.failNext('closeSession', 'hang', 64);
    fx.cleanup(() => h.faults[0]!.release());
    // Whether or not a closeSession reached the transport (closing it first sends none),
    // removeMember returns; if it hung, the test would time out.
    await h.group.removeMember('member-1');
    expect(states(h.group)[0]).toBe('removed');
  });

  it('group.close() returns when a member host is frozen (SIGSTOP) while idle', async () => {
    const g = fx.track(
      await HaGroup.open({
        members: fx.bed.memberConfigs().slice(0, 2),
        transport: 'host',
        deadlineMs: 500,
        ceilingMs: 5_000,
      }),
    );
    const session = g.slot.openSession();
    await session.login(fx.bed.tokens[0]!.userPin);
    await Promise.all(Array.from({ length: 4 }, () => session.generateRandom(8)));
    const pid = hostPid(g, 0);
    process.kill(pid, 'SIGSTOP');
    fx.cleanup(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    });
    const closing = g.close();
    // A real frozen process: a bounded wait (deadline 500 ms, SIGTERM grace 2 s; far more than both).
    const done = await settledWithin(closing, 6_000);
    if (!done) process.kill(pid, 'SIGCONT'); // let afterEach finish
    expect(done).toBe(true);
  }, 30_000);
});

describe('group.close() during a recovery attempt (in-process transport)', () => {
  it('leaves no module loaded and no worker threads behind', async () => {
    const baseline = loadedModuleCount();
    const g = fx.track(await HaGroup.open({ members: fx.bed.memberConfigs(), transport: 'in-process', clock: new FakeClock(1_000), recovery: { intervalMs: INTERVAL_MS } }));
    internalsOf(g).members[0]!.fail('injected');
    // recover() runs synchronously up to reconnect()'s `await this.#closing`; close() then
    // closes the NEW transport before it connects, and InProcessTransport.connect() does not
    // check #closed: it loads the module and starts worker threads that nothing will stop.
    const recovering = g.recover('member-1').catch(() => false);
    await g.close();
    // The attempt has ended (its connect included): a module it leaked would be loaded now.
    await recovering;
    expect(loadedModuleCount()).toBe(baseline);
  });
});
