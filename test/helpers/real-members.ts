/**
 * Real Members (the group's own Member class, built by the group's member factory) on the
 * tokens of a test bed, connected in-process, for testing one collaborator of the group
 * (membership, domain, ...) without the rest of it.
 */
import { resolveGroupConfig } from '../../src/group/group-config.js';
import { createMember } from '../../src/group/member-factory.js';
import type { Member } from '../../src/member/member.js';
import type { Testbed, TestbedRole } from '../../src/testbed/softhsm-testbed.js';
import { FakeClock } from './fake-clock.js';

/** Connected members and a way to close them. */
export interface RealMembers {
  readonly members: Member[];
  readonly clock: FakeClock;
  /** Closes every member (idempotent). */
  close(): Promise<void>;
}

/**
 * Builds and connects one Member per token of `bed` (or the tokens at `indexes`), in member order.
 *
 * @example
 * const { members, close } = await realMembers(bed, { roles: ['active', 'standby'] });
 */
export async function realMembers(bed: Testbed, options: { readonly roles?: readonly TestbedRole[]; readonly indexes?: readonly number[] } = {}): Promise<RealMembers> {
  const clock = new FakeClock(1_000);
  const all = bed.memberConfigs(options.roles ? { roles: options.roles } : undefined);
  const configs = options.indexes ? options.indexes.map((i) => all[i]!) : all;
  const config = resolveGroupConfig({ members: configs, transport: 'in-process', clock });
  const members = config.members.map((m) => createMember(m, config, () => {}));
  const close = async (): Promise<void> => {
    await Promise.allSettled(members.map((m) => m.close()));
  };
  try {
    await Promise.all(members.map((m) => m.connect()));
  } catch (error) {
    await close();
    throw error;
  }
  return { members, clock, close };
}
