/**
 * GroupDomain on real SoftHSM2 tokens: the group's domain key read when it opens, and a
 * reconnected member admitted only with the same key. Tokens 1 and 2 share a domain,
 * token 3 has a domain of its own, token 4 has none.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { Member } from '../../src/member/member.js';
import { GroupDomain } from '../../src/replication/group-domain.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { realMembers, type RealMembers } from '../helpers/real-members.js';

let bed: Testbed;
let real: RealMembers;
let members: Member[];

beforeAll(async () => {
  bed = await createTestbed({ count: 4 });
  const configs = bed.memberConfigs();
  await HaGroup.initDomain({ members: configs.slice(0, 2), transport: 'in-process' });
  await HaGroup.initDomain({ members: configs.slice(2, 3), transport: 'in-process' });
  real = await realMembers(bed);
  members = real.members;
}, 60_000);
afterAll(async () => {
  await real?.close();
  await bed?.dispose();
});

/** A domain checked on `indexes` (all serving). */
async function checked(indexes: readonly number[]): Promise<GroupDomain> {
  const domain = new GroupDomain();
  await domain.check(indexes.map((i) => members[i]!));
  return domain;
}

describe('GroupDomain.admit', () => {
  it('admits a member holding the group\'s domain key, with its handle of it', async () => {
    const domain = await checked([0]);
    expect(domain.checkValue).toMatch(/^[0-9a-f]{16}$/);
    expect(domain.keyOf(members[1]!)).toBeUndefined();
    await domain.admit(members[1]!);
    expect(domain.keyOf(members[1]!)).toBeDefined();
  });

  it.each([
    { what: 'a different domain key', index: 2, reason: /member-3 refused: its domain key [0-9a-f]+ differs from the group's [0-9a-f]+/ },
    { what: 'no domain key', index: 3, reason: /member-4 refused: it has no domain key/ },
  ])('refuses a member with $what (ERR_DOMAIN), and keeps no handle for it', async ({ index, reason }) => {
    const domain = await checked([0, 1]);
    const before = domain.checkValue;
    await expect(domain.admit(members[index]!)).rejects.toMatchObject({ code: 'ERR_DOMAIN', message: expect.stringMatching(reason) });
    expect(domain.keyOf(members[index]!)).toBeUndefined();
    expect(domain.checkValue).toBe(before);
  });

  it('a group without a domain admits any member', async () => {
    const domain = await checked([3]);
    expect(domain.checkValue).toBeUndefined();
    await domain.admit(members[2]!);
    await domain.admit(members[0]!);
    expect(domain.keyOf(members[0]!)).toBeDefined();
  });
});

describe('HaGroup.open and the domain', () => {
  it('refuses (fails) a member holding another domain key, and one holding none; the others serve', async () => {
    const group = await HaGroup.open({ members: bed.memberConfigs(), transport: 'in-process', recovery: { maxAttempts: 0 } });
    try {
      const states = group.status().members.map((m) => m.state);
      expect(states.slice(0, 2).map((s) => s.kind)).toEqual(['active', 'active']);
      expect(states[2]).toMatchObject({ kind: 'failed', reason: expect.stringMatching(/domain key [0-9a-f]+ differs/) });
      expect(states[3]).toMatchObject({ kind: 'failed', reason: expect.stringMatching(/no domain key/) });
      // A refused member is not tried again by hand either: it still holds the wrong key.
      expect(await group.recover('member-3')).toBe(false);
      expect(await group.recover('member-4')).toBe(false);
      expect(group.status().members.map((m) => m.state.kind)).toEqual(['active', 'active', 'failed', 'failed']);
    } finally {
      await group.close();
    }
  });

  it('initDomain refuses members holding two different domain keys (ERR_DOMAIN) and gives none of them the other key', async () => {
    const configs = bed.memberConfigs().slice(0, 3);
    await expect(HaGroup.initDomain({ members: configs, transport: 'in-process' })).rejects.toMatchObject({ code: 'ERR_DOMAIN' });
    expect(await checked([0, 1]).then((d) => d.checkValue)).not.toBe(await checked([2]).then((d) => d.checkValue));
  });
});
