/**
 * The internals of an open group, for tests, benchmarks and diagnostics only (reached
 * through the `pkcs11-ha/testing` entry point): applications use `status()` and the
 * membership methods, never a Member's `fail()` or `run()`.
 */
import type { Catalog } from '../catalog/catalog.js';
import type { ObjectDiscovery } from '../catalog/object-discovery.js';
import type { Member } from '../member/member.js';
import type { Membership } from '../member/membership.js';
import type { MemberRecovery } from '../recovery/member-recovery.js';
import type { OpenSessions } from '../recovery/open-sessions.js';
import type { GroupDomain } from '../replication/group-domain.js';
import type { DebtJournal } from '../replication/journal.js';
import type { KeyManager } from '../replication/key-manager.js';
import type { Router } from '../routing/router.js';

/** An open group's collaborators. */
export interface GroupInternals {
  /** The members in member order (removed ones included). */
  readonly members: readonly Member[];
  readonly membership: Membership;
  readonly catalog: Catalog;
  readonly discovery: ObjectDiscovery;
  readonly journal: DebtJournal;
  readonly domain: GroupDomain;
  readonly router: Router;
  readonly keys: KeyManager;
  readonly recovery: MemberRecovery;
  readonly openSessions: OpenSessions;
}

const registry = new WeakMap<object, GroupInternals>();

/** @internal Called by the group at construction. */
export function registerInternals(group: object, internals: GroupInternals): void {
  registry.set(group, internals);
}

/**
 * The internals of a group.
 *
 * @throws TypeError for an object that is not an HaGroup
 */
export function internalsOf(group: object): GroupInternals {
  const internals = registry.get(group);
  if (internals === undefined) throw new TypeError('not an HaGroup');
  return internals;
}
