/**
 * The resync, verified member by member: each token is opened ALONE (a group of one
 * member, loaded in this process once the demo's group is closed), so what it answers is
 * what that token holds, not what the group knows. Every living key must be there and do what its evidence says;
 * every destroyed key must be gone.
 */
import { HaGroup } from '../../src/index.js';
import type { TestbedMemberConfig } from '../../src/testbed/softhsm-testbed.js';
import type { Cleanup } from './cleanup.js';
import { checkGone, checkKey, type DemoKey } from './keys.js';

/** What one member's check found. */
export interface MemberVerdict {
  readonly member: string;
  /** Living keys found and working. */
  readonly present: number;
  /** Destroyed keys confirmed gone. */
  readonly gone: number;
  /** What is wrong; empty when the member checks out. */
  readonly problems: readonly string[];
}

/**
 * Opens `member`'s token alone and checks it.
 * @param living keys that must be there and work
 * @param destroyed labels that must be gone
 */
export async function verifyMember(
  member: TestbedMemberConfig,
  living: readonly DemoKey[],
  destroyed: readonly string[],
  cleanup: Cleanup,
): Promise<MemberVerdict> {
  let group: HaGroup | undefined;
  try {
    const opening = HaGroup.open({ members: [{ ...member, role: 'active' }], transport: 'in-process', threadsPerMember: 1, recovery: { maxAttempts: 0 } });
    group = await cleanup.adopt(`close the check of ${member.name}`, opening, (g) => g.close());
    const session = group.slot.openSession();
    await session.login(member.userPin);
    const problems: string[] = [];
    let present = 0;
    let gone = 0;
    for (const key of living) {
      const wrong = await checkKey(session, key).catch((error: unknown) => `${key.label}: ${(error as Error).message}`);
      if (wrong === undefined) present++;
      else problems.push(wrong);
    }
    for (const label of destroyed) {
      const wrong = await checkGone(session, label).catch((error: unknown) => `${label}: ${(error as Error).message}`);
      if (wrong === undefined) gone++;
      else problems.push(wrong);
    }
    return { member: member.name, present, gone, problems };
  } catch (error) {
    return { member: member.name, present: 0, gone: 0, problems: [`could not be checked: ${(error as Error).message}`] };
  } finally {
    await group?.close();
  }
}
