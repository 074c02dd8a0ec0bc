/**
 * Membership: elections applied to real Members on SoftHSM2 tokens (promotions made once,
 * the primary moving), and standby promotion, demotion and membership changes through a
 * whole group (faults from FaultTransport, time from the fake clock).
 */
import { describe, expect, it } from 'vitest';
import type { Member } from '../../src/member/member.js';
import { Membership, type ElectionChanges } from '../../src/member/membership.js';
import { faultGroups, INTERVAL_MS, states } from '../helpers/fault-group.js';
import { realMembers } from '../helpers/real-members.js';
import { until } from '../helpers/until.js';

const fx = faultGroups({ prefix: 'ms' });

describe('Membership.elect on real members (active, active, standby)', () => {
  type Step = {
    readonly what: string;
    readonly act: (m: readonly Member[]) => Promise<void> | void;
    readonly changes: ElectionChanges;
    readonly primary: string | undefined;
    readonly promoted: readonly boolean[];
  };
  const recover = async (m: Member) => {
    await m.reconnect();
    m.rejoin();
  };
  const table = (demoteStandbys: boolean): Step[] => [
    { what: 'first election', act: () => {}, changes: { promoted: [], demoted: [], primary: { previous: undefined, current: 'member-1' } }, primary: 'member-1', promoted: [false, false, false] },
    { what: 'nothing changed', act: () => {}, changes: { promoted: [], demoted: [] }, primary: 'member-1', promoted: [false, false, false] },
    { what: 'member-1 fails', act: (m) => m[0]!.fail('injected'), changes: { promoted: [], demoted: [], primary: { previous: 'member-1', current: 'member-2' } }, primary: 'member-2', promoted: [false, false, false] },
    { what: 'member-2 fails', act: (m) => m[1]!.fail('injected'), changes: { promoted: ['member-3'], demoted: [], primary: { previous: 'member-2', current: 'member-3' } }, primary: 'member-3', promoted: [false, false, true] },
    { what: 'nothing changed (promoted once)', act: () => {}, changes: { promoted: [], demoted: [] }, primary: 'member-3', promoted: [false, false, true] },
    demoteStandbys
      ? { what: 'member-2 back', act: (m) => recover(m[1]!), changes: { promoted: [], demoted: ['member-3'], primary: { previous: 'member-3', current: 'member-2' } }, primary: 'member-2', promoted: [false, false, false] }
      : // Kept promoted, it counts as active: member-2 comes first in member order.
        { what: 'member-2 back', act: (m) => recover(m[1]!), changes: { promoted: [], demoted: [], primary: { previous: 'member-3', current: 'member-2' } }, primary: 'member-2', promoted: [false, false, true] },
    { what: 'nothing changed', act: () => {}, changes: { promoted: [], demoted: [] }, primary: 'member-2', promoted: [false, false, !demoteStandbys] },
  ];

  it.each([true, false])('demoteStandbys %s: each election reports what it changed, once', async (demoteStandbys) => {
    const { members, close } = await realMembers(fx.bed, { roles: ['active', 'active', 'standby'] });
    try {
      const membership = new Membership({ demoteStandbys });
      for (const m of members) membership.add(m);
      for (const step of table(demoteStandbys)) {
        await step.act(members);
        expect({ step: step.what, changes: membership.elect() }).toEqual({ step: step.what, changes: step.changes });
        expect({ step: step.what, primary: membership.primary?.name }).toEqual({ step: step.what, primary: step.primary });
        expect({ step: step.what, promoted: members.map((m) => m.promoted) }).toEqual({ step: step.what, promoted: step.promoted });
      }
      expect(membership.serving().map((m) => m.name)).toEqual(['member-2', 'member-3']);
    } finally {
      await close();
    }
  });
});

describe('standby members in a group', () => {
  it('are promoted when no active member is left and demoted when one is back (default)', async () => {
    const h = await fx.openSigning({ roles: ['active', 'active', 'standby'] });
    const standbySigns = () => h.faults[2]!.executed('sign');
    await Promise.all(Array.from({ length: 6 }, () => h.sign()));
    expect(standbySigns()).toBe(0);
    h.faults[0]!.disconnect();
    h.faults[1]!.disconnect();
    expect(h.events).toContainEqual({ name: 'standbyPromoted', member: 'member-3' });
    expect(h.group.primary).toBe('member-3');
    expect(await h.sign()).toEqual(h.expectedMac);
    expect(standbySigns()).toBe(1);
    h.clock.advance(INTERVAL_MS);
    await until(() => states(h.group).join() === 'active,active,standby', 'the actives to recover');
    expect(h.events).toContainEqual({ name: 'standbyDemoted', member: 'member-3' });
    expect(h.group.primary).toBe('member-1');
    await Promise.all(Array.from({ length: 6 }, () => h.sign()));
    expect(standbySigns()).toBe(1);
  });

  it('stay promoted when demoteStandbys is false', async () => {
    const h = await fx.openSigning({ roles: ['active', 'standby', 'standby'], extra: { demoteStandbys: false, recovery: { intervalMs: INTERVAL_MS } } });
    h.faults[0]!.disconnect();
    expect(h.group.status().members.map((m) => m.promoted)).toEqual([false, true, true]);
    h.clock.advance(INTERVAL_MS);
    await until(() => states(h.group)[0] === 'active', 'member-1 to recover');
    expect(h.events.filter((e) => e.name === 'standbyDemoted')).toEqual([]);
    const before = h.faults[1]!.executed('sign') + h.faults[2]!.executed('sign');
    await Promise.all(Array.from({ length: 6 }, () => h.sign()));
    expect(h.faults[1]!.executed('sign') + h.faults[2]!.executed('sign')).toBeGreaterThan(before);
  });
});

describe('membership changes online', () => {
  it('setStandby, removeMember and addMember take effect without reopening the group', async () => {
    const h = await fx.openSigning({ count: 2 });
    h.group.setStandby('member-1', true);
    expect(h.group.primary).toBe('member-2');
    const signs0 = h.faults[0]!.executed('sign');
    await Promise.all(Array.from({ length: 4 }, () => h.sign()));
    expect(h.faults[0]!.executed('sign')).toBe(signs0);
    h.group.setStandby('member-1', false);
    expect(h.group.primary).toBe('member-1');

    const added = fx.bed.memberConfigs()[2]!;
    expect(await h.group.addMember(added)).toBe('member-3');
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    await Promise.all(Array.from({ length: 9 }, () => h.sign()));
    expect(h.faults[2]!.executed('sign')).toBeGreaterThan(0);

    await h.group.removeMember('member-2');
    expect(states(h.group)).toEqual(['active', 'removed', 'active']);
    const signs1 = h.faults[1]!.executed('sign');
    expect(await h.sign()).toEqual(h.expectedMac);
    expect(h.faults[1]!.executed('sign')).toBe(signs1);
    await expect(h.group.addMember(added)).rejects.toMatchObject({ code: 'ERR_CONFIG' });
    await expect(h.group.removeMember('nobody')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});
