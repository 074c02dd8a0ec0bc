/**
 * `minReplicas` on real member hosts: a creation that reaches too few members fails with a
 * ReplicationError (ERR_REPLICATION) and is removed again. What it leaves in `status().owed`
 * is only the removal of a copy a member may hold because it failed while taking it, named
 * in the error and settled when that member recovers; nothing when no member can hold one.
 */
import { describe, expect, it } from 'vitest';
import { ReplicationError } from '../../src/index.js';
import { internalsOf } from '../../src/testing.js';
import { hostGroups } from '../helpers/host-groups.js';
import { hostPid } from '../helpers/host-pid.js';

const hosts = hostGroups([], { initDomain: true });
const AES = (label: string) => ({ label, valueLen: 32, token: true, encrypt: true, decrypt: true }) as const;

describe('a creation rolled back under minReplicas (3 member hosts, minReplicas 3)', () => {
  it('leaves no debt when the short member never got the command (its connection was gone)', async () => {
    const group = await hosts.open({ members: hosts.bed.memberConfigs(), minReplicas: 3, recovery: { maxAttempts: 0 } });
    const session = group.slot.openSession();
    await session.login(hosts.bed.tokens[0]!.userPin);
    await internalsOf(group).members[2]!.transport.close();
    const error = await session.generateKey('AES_KEY_GEN', AES('mr-gone')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReplicationError);
    expect(error).toMatchObject({ code: 'ERR_REPLICATION', message: expect.stringMatching(/removed again$/) });
    expect(group.status().owed).toEqual({});
    expect(await session.findObjects({ label: 'mr-gone' })).toEqual([]);
  });

  it('a member frozen while taking its copy owes only that copy\'s removal, named in the error, and settles it when it recovers', async () => {
    const group = await hosts.open({ members: hosts.bed.memberConfigs(), minReplicas: 3, deadlineMs: 600, heartbeatIntervalMs: 100, recovery: { maxAttempts: 0 } });
    const session = group.slot.openSession();
    await session.login(hosts.bed.tokens[0]!.userPin);
    hosts.freeze(hostPid(group, 2));
    const error = await session.generateKey('AES_KEY_GEN', AES('mr-frozen')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReplicationError);
    expect((error as Error).message).toMatch(/removed again; member-3 failed while taking a copy and owe its removal$/);
    expect(group.status().members[2]!.state.kind).toBe('failed');
    // The only debt: the removal of member-3's possible copy; nothing is owed for a live key.
    expect(group.status().owed).toEqual({ 'member-3': 1 });
    expect([...internalsOf(group).journal.entries()].flatMap(([m, debts]) => debts.map((d) => `${m}:${d.kind}`))).toEqual(['member-3:destroy']);
    expect(group.status().objects).toBe(0);
    // Back: the debt is settled and no member shows the key.
    expect(await group.recover('member-3')).toBe(true);
    expect(group.status().owed).toEqual({});
    expect(await session.findObjects({ label: 'mr-frozen' })).toEqual([]);
  });
});
