/** The process of a member host, for tests that kill or freeze it for real. */
import type { HaGroup } from '../../src/group/ha-group.js';
import { HostTransport } from '../../src/host/host-transport.js';
import { internalsOf } from '../../src/testing.js';

/**
 * The pid of the host process serving member `index` now (a recovery starts a new one).
 *
 * @throws Error when that member does not run on a member host
 */
export function hostPid(group: HaGroup, index: number): number {
  const t = internalsOf(group).members[index]!.transport;
  if (!(t instanceof HostTransport) || t.pid === undefined) throw new Error(`member ${index} has no host process`);
  return t.pid;
}
