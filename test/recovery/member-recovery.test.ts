/**
 * MemberRecovery on real SoftHSM2 tokens: attempts in the background and their bounds, a
 * refused PIN, debts recorded late in an attempt, a journal read back after a restart,
 * and the first synchronisation of a member added online. Faults a token cannot give on
 * demand come from FaultTransport; time from the fake clock, except where real member
 * host processes are killed (bounded polling then).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { GroupConfig } from '../../src/group/group-config.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { faultGroups, INTERVAL_MS, states } from '../helpers/fault-group.js';
import { hostPid } from '../helpers/host-pid.js';
import { until } from '../helpers/until.js';
import { internalsOf } from '../../src/testing.js';

const fx = faultGroups({ prefix: 'mr', domain: true });

describe('automatic attempts', () => {
  it('a dropped member is recovered in the background after the interval and serves again', async () => {
    const h = await fx.openSigning();
    h.faults[0]!.disconnect();
    expect(states(h.group)[0]).toBe('failed');
    expect(await h.sign()).toEqual(h.expectedMac);
    const old = h.faults[0];
    h.clock.advance(INTERVAL_MS);
    await until(() => states(h.group)[0] === 'active', 'member-1 to recover');
    expect(h.faults[0]).not.toBe(old); // a fresh transport
    expect(h.events).toContainEqual({ name: 'memberRecovered', member: 'member-1' });
    // It takes its turn again.
    const before = h.faults[0]!.executed('sign');
    await Promise.all(Array.from({ length: 6 }, () => h.sign()));
    expect(h.faults[0]!.executed('sign')).toBeGreaterThan(before);
    expect(h.group.status().members[0]).toMatchObject({ failures: 1, outstanding: 0 });
  });

  it.each([
    { maxAttempts: 0, expectedAttempts: 0 },
    { maxAttempts: 1, expectedAttempts: 1 },
    { maxAttempts: 3, expectedAttempts: 3 },
  ])('maxAttempts $maxAttempts: a member that stays down is tried $expectedAttempts times, then left failed', async ({ maxAttempts, expectedAttempts }) => {
    const h = await fx.openSigning({ extra: { recovery: { intervalMs: INTERVAL_MS, maxAttempts } } });
    h.down[0] = true;
    h.faults[0]!.disconnect();
    for (let i = 0; i < 6; i++) {
      h.clock.advance(INTERVAL_MS);
      await until(() => states(h.group)[0] === 'failed', 'the attempt to end');
    }
    expect(h.events.filter((e) => e.name === 'recoveryFailed')).toHaveLength(expectedAttempts);
    const state = h.group.status().members[0]!.state;
    expect(state).toMatchObject({ kind: 'failed', attempts: expectedAttempts });
    // The operator recovers it by hand once it is back.
    h.down[0] = false;
    expect(await h.group.recover('member-1')).toBe(true);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
  });

  it('a PIN refused on recovery stops automatic attempts (retrying could lock the token)', async () => {
    const h = await fx.openSigning({ userPins: ['99999999'] });
    h.faults[0]!.disconnect();
    for (let i = 0; i < 5; i++) {
      h.clock.advance(INTERVAL_MS);
      await until(() => states(h.group)[0] === 'failed', 'the attempt to end');
    }
    const refused = h.events.filter((e) => e.name === 'recoveryFailed');
    expect(refused).toHaveLength(1);
    expect(h.group.status().members[0]!.loginFailures).toBe(1);
  });
});

describe('joining the group', () => {
  it('a member added online whose own PIN is refused is not retried in the background (retrying could lock the token)', async () => {
    const h = await fx.openSigning({ count: 2 });
    const config = { ...fx.bed.memberConfigs()[2]!, userPin: '99999999' };
    await expect(h.group.addMember(config)).rejects.toMatchObject({ code: 'ERR_MEMBER_UNREACHABLE' });
    const { recovery, members } = internalsOf(h.group);
    expect(h.group.status().members[2]!.loginFailures).toBe(1);
    expect(recovery.pending(members[2]!)).toBe(false);
    // A member that could not join for another reason (unreachable) is retried.
    h.faults[1]!.disconnect();
    expect(recovery.pending(members[1]!)).toBe(true);
  });
});

describe('debts recorded late in an attempt', () => {
  it('a replica owed after resyncMember finished is settled before the member serves', async () => {
    const h = await fx.open();
    const session = h.group.slot.openSession();
    await session.login(fx.bed.tokens[0]!.userPin);
    h.faults[0]!.disconnect();
    // Something to resync, so that resyncProgress fires.
    await session.generateKey('AES_KEY_GEN', { label: 'rv-while-down', token: true, valueLen: 32, encrypt: true, decrypt: true });
    // When the last debt is settled, hold the next command: the final scan's search.
    let held = false;
    h.group.on('resyncProgress', (e) => {
      if (held || e.member !== 'member-1' || e.done !== e.total) return;
      held = true;
      h.faults[0]!.failNext('findObjects', 'hang');
    });
    const recovering = h.group.recover('member-1');
    await until(() => h.faults[0]!.hanging === 1, 'the recovery to reach its final scan');
    // A key made now: member-1 is recovering, so it owes the replica.
    const late = await session.generateKey('AES_KEY_GEN', { label: 'rv-late', token: true, valueLen: 32, encrypt: true, decrypt: true });
    h.faults[0]!.release();
    expect(await recovering).toBe(true);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    // "A recovered member is first resynchronised with everything it owes, and only then takes traffic."
    h.clock.advance(60_000);
    expect(h.group.status().owed['member-1'] ?? 0).toBe(0);
    expect(h.group.describeObject(late)!.holders).toContain('member-1');
  });
});

describe('a recovery while the application is logged out', () => {
  // Found by the chaos run (seed 1): a recovery resynchronised between the application's
  // logout and its login. Its token hid the private keys, so deletions and renames owed for
  // them found nothing and were settled; the destroyed keys stayed on the member.
  it('leaves what it owes for private keys owed, and settles it at the next login', async () => {
    const h = await fx.open();
    const session = h.group.slot.openSession();
    const pin = fx.bed.tokens[0]!.userPin;
    await session.login(pin);
    const key = await session.generateKey('AES_KEY_GEN', { label: 'mr-out-of-sight', token: true, valueLen: 32, encrypt: true, decrypt: true });
    h.faults[1]!.disconnect();
    await session.destroyObject(key);
    expect(h.group.status().owed['member-2']).toBe(1);
    await session.logout();
    expect(await h.group.recover('member-2')).toBe(true);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    expect(h.group.status().owed['member-2']).toBe(1);
    await session.login(pin);
    expect(h.group.status().owed['member-2'] ?? 0).toBe(0);
    const left = await internalsOf(h.group).members[1]!.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: [{ type: 3, value: Buffer.from('mr-out-of-sight') }] }));
    expect(left).toEqual([]);
  });
});

describe('catching up under key creation', () => {
  it('a recovering member takes copies of new token keys directly once clean, so what it owes stops growing', async () => {
    const h = await fx.open();
    const session = h.group.slot.openSession();
    await session.login(fx.bed.tokens[0]!.userPin);
    h.faults[0]!.disconnect();
    const missed = await session.generateKey('AES_KEY_GEN', { label: 'cu-missed', token: true, valueLen: 32, encrypt: true, decrypt: true });
    expect(h.group.status().owed['member-1']).toBe(1);
    // Hold the resync's copy of the missed key.
    h.onReconnect[0] = (f) => f.failNext('unwrapKey', 'hang');
    const recovering = h.group.recover('member-1');
    await until(() => h.faults[0]!.hanging === 1, 'the resync to place the missed key');
    expect(states(h.group)[0]).toBe('recovering');
    // Made while it recovers: copied to it at once, not owed.
    const late = await session.generateKey('AES_KEY_GEN', { label: 'cu-late', token: true, valueLen: 32, encrypt: true, decrypt: true });
    expect(h.group.describeObject(late)!.holders).toContain('member-1');
    expect(h.group.status().owed['member-1']).toBe(1);
    // A session key is not: the member's sessions are restored at the end of the attempt.
    await session.generateKey('AES_KEY_GEN', { label: 'cu-session', token: false, valueLen: 32, encrypt: true });
    h.faults[0]!.release();
    expect(await recovering).toBe(true);
    expect(h.group.status().owed['member-1'] ?? 0).toBe(0);
    for (const key of [missed, late]) expect(h.group.describeObject(key)!.holders).toContain('member-1');
    // And both work on member-1 alone.
    h.faults[1]!.disconnect();
    h.faults[2]!.disconnect();
    const iv = randomBytes(16);
    for (const key of [missed, late]) {
      const sealed = await session.encrypt({ name: 'AES_CBC_PAD', iv }, key, Buffer.from('caught up'));
      expect((await session.decrypt({ name: 'AES_CBC_PAD', iv }, key, sealed)).toString()).toBe('caught up');
    }
  });
});

describe('on member host processes', () => {
  let journalDir: string;
  beforeAll(async () => {
    journalDir = await mkdtemp(join(tmpdir(), 'pkcs11-ha-journal-'));
  });
  afterAll(async () => {
    await rm(journalDir, { recursive: true, force: true });
  });

  async function openHost(extra: Partial<GroupConfig> = {}): Promise<{ g: HaGroup; session: VirtualSession }> {
    const g = fx.track(await HaGroup.open({ members: fx.bed.memberConfigs(), transport: 'host', recovery: { intervalMs: 100 }, ...extra }));
    const session = g.slot.openSession();
    await session.login(fx.bed.tokens[0]!.userPin);
    return { g, session };
  }

  it('keys created while a member was down work on it after it recovers by itself, and a journal repairs it after the application restarts', async () => {
    const journalPath = join(journalDir, 'journal.json');
    let { g, session } = await openHost({ deadlineMs: 120_000, journalPath, recovery: { intervalMs: 100 } });
    // Down, then back on its own: the key made meanwhile is replicated to it before it serves.
    process.kill(hostPid(g, 2), 'SIGKILL');
    await until(() => states(g)[2] !== 'active', 'member-3 to fail');
    const label1 = `h-down-${randomBytes(4).toString('hex')}`;
    const k1 = await session.generateKey('AES_KEY_GEN', { label: label1, valueLen: 32, token: true, encrypt: true, decrypt: true });
    await until(() => states(g)[2] === 'active', 'member-3 to recover');
    await until(() => g.describeObject(k1)!.holders.includes('member-3'), 'member-3 to hold the new key');
    expect(g.status().owed).toEqual({});

    // Now the application goes away while member-3 owes a key, and comes back.
    await g.close();
    ({ g, session } = await openHost({ deadlineMs: 120_000, journalPath, recovery: { maxAttempts: 0 } }));
    process.kill(hostPid(g, 2), 'SIGKILL');
    await until(() => states(g)[2] === 'failed', 'member-3 to fail');
    const label2 = `h-restart-${randomBytes(4).toString('hex')}`;
    await session.generateKey('AES_KEY_GEN', { label: label2, valueLen: 32, token: true, encrypt: true, decrypt: true });
    expect(g.status().owed).toEqual({ 'member-3': 1 });
    await g.close();

    ({ g, session } = await openHost({ deadlineMs: 120_000, journalPath }));
    await until(() => Object.keys(g.status().owed).length === 0, 'member-3 to be repaired from the journal');
    const [k2] = await session.findObjects({ label: label2 });
    expect(k2).toBeDefined();
    await until(() => g.describeObject(k2!)!.holders.length === 3, 'every member to hold the key');
    const iv = randomBytes(12);
    const data = Buffer.from('host failover');
    const ct = await session.encrypt({ name: 'AES_GCM', iv }, k2!, data);
    expect(await session.decrypt({ name: 'AES_GCM', iv }, k2!, ct)).toEqual(data);
  }, 120_000);

  it('a member added online receives every token key before it serves, and removing it takes it out at once', async () => {
    const g = fx.track(await HaGroup.open({ members: fx.bed.memberConfigs().slice(0, 2), transport: 'host' }));
    const session = g.slot.openSession();
    await expect(g.addMember(fx.bed.memberConfigs()[2]!)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await session.login(fx.bed.tokens[0]!.userPin);
    const label = `h-add-${randomBytes(4).toString('hex')}`;
    const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label, curve: 'P-256', token: true, verify: true }, { label, token: true, sign: true });
    const progress: number[] = [];
    g.on('resyncProgress', (e) => e.member === 'member-3' && progress.push(e.done));
    expect(await g.addMember(fx.bed.memberConfigs()[2]!)).toBe('member-3');
    // Both halves (and whatever earlier tests left on the tokens) reached it before it served.
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(g.describeObject(pair.privateKey)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
    expect(g.describeObject(pair.publicKey)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
    // Signatures made on the new member verify with the group's public key.
    await g.removeMember('member-1');
    await g.removeMember('member-2');
    const digest = randomBytes(32);
    const sig = await session.sign('ECDSA', pair.privateKey, digest);
    expect(g.status().members[2]!.served).toBeGreaterThan(0);
    expect(await session.verify('ECDSA', pair.publicKey, digest, sig)).toBe(true);
    expect(states(g)).toEqual(['removed', 'removed', 'active']);
  }, 60_000);
});
