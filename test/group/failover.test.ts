/**
 * Failover and recovery on real SoftHSM2 tokens, with faults a real token cannot give on
 * demand (a hang, a dropped connection) injected by FaultTransport, and all time (deadlines,
 * heartbeats, recovery intervals) driven by a fake clock. Member host processes killed for
 * real are in test/group/host-failover.test.ts.
 */
import { createHmac } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { GroupConfig } from '../../src/group/group-config.js';
import type { MemberStateKind } from '../../src/member/member-state.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { createTestbed, type Testbed, type TestbedRole } from '../../src/testbed/softhsm-testbed.js';
import { provisionKeys, standardKeys } from '../../src/testbed/provision.js';
import type { TokenInfo, Transport } from '../../src/transport/transport.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FaultTransport } from '../helpers/fault-transport.js';
import { until } from '../helpers/until.js';
import { internalsOf } from '../../src/testing.js';

const KEYS = standardKeys('f');
const HMAC_VALUE = (KEYS.find((k) => k.kind === 'hmac') as { value: Buffer }).value;
const DATA = Buffer.from('failover');
const EXPECTED_MAC = createHmac('sha256', HMAC_VALUE).update(DATA).digest();
const DEADLINE = 1_000;
const INTERVAL = 500;

let bed: Testbed;
let group: HaGroup | undefined;

beforeAll(async () => {
  bed = await createTestbed({ count: 3 });
  provisionKeys(bed.tokens, KEYS);
});
afterEach(async () => {
  await group?.close();
  group = undefined;
});
afterAll(async () => {
  await bed?.dispose();
});

/** A transport whose connection is always refused: a member that stays down. */
class RefusingTransport implements Transport {
  readonly kind = 'refusing';
  readonly pending = 0;
  connect(): Promise<TokenInfo> {
    return Promise.reject(new Error('connection refused (injected)'));
  }
  execute(): Promise<never> {
    return Promise.reject(new Error('not connected'));
  }
  onDisconnect(): void {}
  async close(): Promise<void> {}
}

interface Harness {
  readonly group: HaGroup;
  readonly clock: FakeClock;
  /** The member's transport now (a recovery brings a new one). */
  readonly faults: FaultTransport[];
  /** While true for a member, a reconnection of it is refused. */
  readonly down: boolean[];
  readonly session: VirtualSession;
  readonly key: number;
  readonly events: { name: string; member?: string }[];
}

async function open(options: { roles?: readonly TestbedRole[]; count?: number; extra?: Partial<GroupConfig>; userPins?: (string | undefined)[] } = {}): Promise<Harness> {
  const clock = new FakeClock(1_000);
  const faults: FaultTransport[] = [];
  const down: boolean[] = [];
  const members = bed
    .memberConfigs(options.roles ? { roles: options.roles } : undefined)
    .slice(0, options.count ?? 3)
    .map((m, i) => (options.userPins?.[i] === undefined ? m : { ...m, userPin: options.userPins[i] }));
  group = await HaGroup.open({
    members,
    clock,
    deadlineMs: DEADLINE,
    ceilingMs: 10 * DEADLINE,
    recovery: { intervalMs: INTERVAL },
    transportFactory: (m) => (down[m.index] ? new RefusingTransport() : (faults[m.index] = FaultTransport.inProcess(m))),
    ...options.extra,
  });
  const events: { name: string; member?: string }[] = [];
  for (const name of ['memberFailed', 'memberRecovered', 'recoveryFailed', 'standbyPromoted', 'standbyDemoted', 'primaryChanged'] as const) {
    group.on(name, (e: object) => events.push({ name, ...('member' in e && typeof e.member === 'string' ? { member: e.member } : {}) }));
  }
  const session = group.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);
  const [key] = await session.findObjects({ label: 'f-hmac' });
  expect(key).toBeDefined();
  return { group, clock, faults, down, session, key: key!, events };
}

const sign = (h: Harness): Promise<Buffer> => h.session.sign('SHA256_HMAC', h.key, DATA);
const states = (h: Harness): MemberStateKind[] => h.group.status().members.map((m) => m.state.kind);


describe('deadlines', () => {
  it('a hung command fails its member at the deadline and runs again elsewhere: the caller sees its answer', async () => {
    const h = await open();
    h.faults[0]!.failNext('sign', 'hang');
    const call = sign(h);
    await until(() => h.faults[0]!.hanging === 1, 'the command to hang');
    h.clock.advance(DEADLINE - 1);
    expect(states(h)).toEqual(['active', 'active', 'active']);
    h.clock.advance(1);
    expect(states(h)).toEqual(['failed', 'active', 'active']);
    expect(await call).toEqual(EXPECTED_MAC);
    const failed = h.group.status().members[0]!.state;
    expect(failed.kind === 'failed' && failed.reason).toMatch(/no answer for 1000 ms/);
    expect(h.events).toContainEqual({ name: 'memberFailed', member: 'member-1' });
  });

  it('heartbeats keep a long command alive past the deadline, but not past the ceiling', async () => {
    const h = await open();
    h.faults[0]!.failNext('sign', 'hang');
    const call = sign(h);
    await until(() => h.faults[0]!.hanging === 1, 'the command to hang');
    for (let t = 0; t < 11; t++) {
      h.clock.advance(DEADLINE - 100);
      h.faults[0]!.heartbeat();
    }
    expect(states(h)[0]).toBe('active'); // 9.9 s pending, alive
    h.clock.advance(100); // the ceiling: 10 s
    expect(states(h)[0]).toBe('failed');
    const failed = h.group.status().members[0]!.state;
    expect(failed.kind === 'failed' && failed.reason).toMatch(/past the ceiling/);
    expect(await call).toEqual(EXPECTED_MAC);
  });

  it('a hung command released by a heartbeat-less host is not failed over before the deadline', async () => {
    const h = await open();
    h.faults[0]!.failNext('sign', 'hang');
    const call = sign(h);
    await until(() => h.faults[0]!.hanging === 1, 'the command to hang');
    h.clock.advance(DEADLINE / 2);
    h.faults[0]!.release();
    expect(await call).toEqual(EXPECTED_MAC);
    h.clock.advance(DEADLINE * 5);
    expect(states(h)).toEqual(['active', 'active', 'active']);
  });
});

describe('ambiguous return codes', () => {
  it('CKR_GENERAL_ERROR goes back to the caller and the member stays in service after a probe answers', async () => {
    const h = await open();
    h.faults[0]!.failNext('sign', { rv: pkcs11js.CKR_GENERAL_ERROR });
    const probesBefore = h.faults[0]!.executed('generateRandom');
    await expect(sign(h)).rejects.toMatchObject({ code: 'ERR_PKCS11', ckr: 'CKR_GENERAL_ERROR' });
    expect(h.faults[0]!.executed('generateRandom')).toBe(probesBefore + 1);
    expect(states(h)).toEqual(['active', 'active', 'active']);
  });

  it('CKR_GENERAL_ERROR followed by a failing probe fails the member and the command runs elsewhere', async () => {
    const h = await open();
    h.faults[0]!.failNext('sign', { rv: pkcs11js.CKR_GENERAL_ERROR });
    h.faults[0]!.failNext('generateRandom', { rv: pkcs11js.CKR_DEVICE_ERROR });
    expect(await sign(h)).toEqual(EXPECTED_MAC);
    expect(states(h)).toEqual(['failed', 'active', 'active']);
  });

  it('a refused (stale) member handle is found again by identity once, and the call succeeds', async () => {
    const h = await open();
    h.faults[0]!.failNext('sign', { rv: pkcs11js.CKR_KEY_HANDLE_INVALID });
    const searches = h.faults[0]!.executed('findObjects');
    expect(await sign(h)).toEqual(EXPECTED_MAC);
    expect(h.faults[0]!.executed('findObjects')).toBeGreaterThan(searches);
    expect(states(h)).toEqual(['active', 'active', 'active']);
    expect(h.group.describeObject(h.key)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
  });

  it('1000 tampered-tag style errors never fail a member', async () => {
    const h = await open();
    for (const f of h.faults) f.failNext('sign', { rv: pkcs11js.CKR_GENERAL_ERROR }, 333);
    const results = await Promise.allSettled(Array.from({ length: 999 }, () => sign(h)));
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    expect(states(h)).toEqual(['active', 'active', 'active']);
  });
});

describe('key management under failure', () => {
  it.each(['destroyObject', 'setAttributes'] as const)('%s: the first holder dropping under the call moves it to the next holder; the dropped one owes it', async (op) => {
    const h = await open();
    const data = await h.session.createObject({ class: 'data', label: `f-${op}`, application: 'failover', value: Buffer.from('x'), token: false });
    expect(h.group.describeObject(data)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
    h.faults[0]!.failNext(op, 'disconnect');
    if (op === 'destroyObject') {
      await h.session.destroyObject(data);
      expect(h.group.describeObject(data)).toBeUndefined();
    } else {
      await h.session.setAttributes(data, { label: 'f-renamed' });
      expect(await h.session.findObjects({ label: 'f-renamed' })).toEqual([data]);
    }
    expect(states(h)).toEqual(['failed', 'active', 'active']);
    expect(h.group.status().owed).toEqual({ 'member-1': 1 });
  });
});

describe('recovery', () => {
  it('a dropped member is recovered in the background after the interval and serves again', async () => {
    const h = await open();
    h.faults[0]!.disconnect();
    expect(states(h)[0]).toBe('failed');
    expect(await sign(h)).toEqual(EXPECTED_MAC);
    const old = h.faults[0];
    h.clock.advance(INTERVAL);
    await until(() => states(h)[0] === 'active', 'member-1 to recover');
    expect(h.faults[0]).not.toBe(old); // a fresh transport
    expect(h.events).toContainEqual({ name: 'memberRecovered', member: 'member-1' });
    // It takes its turn again.
    const before = h.faults[0]!.executed('sign');
    await Promise.all(Array.from({ length: 6 }, () => sign(h)));
    expect(h.faults[0]!.executed('sign')).toBeGreaterThan(before);
    expect(h.group.status().members[0]).toMatchObject({ failures: 1, outstanding: 0 });
  });

  it.each([
    { maxAttempts: 0, expectedAttempts: 0 },
    { maxAttempts: 1, expectedAttempts: 1 },
    { maxAttempts: 3, expectedAttempts: 3 },
  ])('maxAttempts $maxAttempts: a member that stays down is tried $expectedAttempts times, then left failed', async ({ maxAttempts, expectedAttempts }) => {
    const h = await open({ extra: { recovery: { intervalMs: INTERVAL, maxAttempts } } });
    h.down[0] = true;
    h.faults[0]!.disconnect();
    for (let i = 0; i < 6; i++) {
      h.clock.advance(INTERVAL);
      await until(() => states(h)[0] === 'failed', 'the attempt to end');
    }
    expect(h.events.filter((e) => e.name === 'recoveryFailed')).toHaveLength(expectedAttempts);
    const state = h.group.status().members[0]!.state;
    expect(state).toMatchObject({ kind: 'failed', attempts: expectedAttempts });
    // The operator recovers it by hand once it is back.
    h.down[0] = false;
    expect(await h.group.recover('member-1')).toBe(true);
    expect(states(h)).toEqual(['active', 'active', 'active']);
  });

  it('a PIN refused on recovery stops automatic attempts (retrying could lock the token)', async () => {
    const h = await open({ userPins: ['99999999'] });
    h.faults[0]!.disconnect();
    for (let i = 0; i < 5; i++) {
      h.clock.advance(INTERVAL);
      await until(() => states(h)[0] === 'failed', 'the attempt to end');
    }
    const refused = h.events.filter((e) => e.name === 'recoveryFailed');
    expect(refused).toHaveLength(1);
    expect(h.group.status().members[0]!.loginFailures).toBe(1);
  });
});

describe('standby members', () => {
  it('are promoted when no active member is left and demoted when one is back (default)', async () => {
    const h = await open({ roles: ['active', 'active', 'standby'] });
    const standbySigns = () => h.faults[2]!.executed('sign');
    await Promise.all(Array.from({ length: 6 }, () => sign(h)));
    expect(standbySigns()).toBe(0);
    h.faults[0]!.disconnect();
    h.faults[1]!.disconnect();
    expect(h.events).toContainEqual({ name: 'standbyPromoted', member: 'member-3' });
    expect(h.group.primary).toBe('member-3');
    expect(await sign(h)).toEqual(EXPECTED_MAC);
    expect(standbySigns()).toBe(1);
    h.clock.advance(INTERVAL);
    await until(() => states(h).join() === 'active,active,standby', 'the actives to recover');
    expect(h.events).toContainEqual({ name: 'standbyDemoted', member: 'member-3' });
    expect(h.group.primary).toBe('member-1');
    await Promise.all(Array.from({ length: 6 }, () => sign(h)));
    expect(standbySigns()).toBe(1);
  });

  it('stay promoted when demoteStandbys is false', async () => {
    const h = await open({ roles: ['active', 'standby', 'standby'], extra: { demoteStandbys: false, recovery: { intervalMs: INTERVAL } } });
    h.faults[0]!.disconnect();
    expect(h.group.status().members.map((m) => m.promoted)).toEqual([false, true, true]);
    h.clock.advance(INTERVAL);
    await until(() => states(h)[0] === 'active', 'member-1 to recover');
    expect(h.events.filter((e) => e.name === 'standbyDemoted')).toEqual([]);
    const before = h.faults[1]!.executed('sign') + h.faults[2]!.executed('sign');
    await Promise.all(Array.from({ length: 6 }, () => sign(h)));
    expect(h.faults[1]!.executed('sign') + h.faults[2]!.executed('sign')).toBeGreaterThan(before);
  });

  it('with no member left at all, calls fail fast with a typed error', async () => {
    const h = await open({ count: 2 });
    h.down[0] = h.down[1] = true;
    h.faults[0]!.disconnect();
    h.faults[1]!.disconnect();
    await expect(sign(h)).rejects.toMatchObject({ code: 'ERR_NO_MEMBER' });
  });
});

describe('membership changes online', () => {
  it('setStandby, removeMember and addMember take effect without reopening the group', async () => {
    const h = await open({ count: 2 });
    h.group.setStandby('member-1', true);
    expect(h.group.primary).toBe('member-2');
    const signs0 = h.faults[0]!.executed('sign');
    await Promise.all(Array.from({ length: 4 }, () => sign(h)));
    expect(h.faults[0]!.executed('sign')).toBe(signs0);
    h.group.setStandby('member-1', false);
    expect(h.group.primary).toBe('member-1');

    const added = bed.memberConfigs()[2]!;
    expect(await h.group.addMember(added)).toBe('member-3');
    expect(states(h)).toEqual(['active', 'active', 'active']);
    await Promise.all(Array.from({ length: 9 }, () => sign(h)));
    expect(h.faults[2]!.executed('sign')).toBeGreaterThan(0);

    await h.group.removeMember('member-2');
    expect(states(h)).toEqual(['active', 'removed', 'active']);
    const signs1 = h.faults[1]!.executed('sign');
    expect(await sign(h)).toEqual(EXPECTED_MAC);
    expect(h.faults[1]!.executed('sign')).toBe(signs1);
    await expect(h.group.addMember(added)).rejects.toMatchObject({ code: 'ERR_CONFIG' });
    await expect(h.group.removeMember('nobody')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('login', () => {
  it('a token already logged in by other code proves nothing: a typo is caught by the next member and reaches no other', async () => {
    const h = await open();
    await h.session.logout();
    // Other code sharing member-1's module logs in on its own.
    await internalsOf(h.group).members[0]!.login(pkcs11js.CKU_USER, bed.tokens[0]!.userPin);
    const before = h.group.status().members.map((m) => m.loginFailures);
    await expect(h.group.slot.openSession().login('00000000')).rejects.toMatchObject({ ckr: 'CKR_PIN_INCORRECT' });
    const after = h.group.status().members.map((m) => m.loginFailures);
    expect(after.map((n, i) => n - before[i]!)).toEqual([0, 1, 0]);
    expect(states(h)).toEqual(['active', 'active', 'active']);
    // The right PIN then logs the group in; member-1 keeps its login.
    await h.group.slot.openSession().login(bed.tokens[0]!.userPin);
    expect(await sign(h)).toEqual(EXPECTED_MAC);
  });
});
