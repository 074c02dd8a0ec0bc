/**
 * What a virtual session needs from its group: the group's collaborators, handed down at
 * construction so that the slot layer never calls back up into the group (and tests can
 * stand one up).
 */
import type { Catalog } from '../catalog/catalog.js';
import type { ObjectDiscovery } from '../catalog/object-discovery.js';
import type { GroupLogin } from '../login/group-login.js';
import type { Membership } from '../member/membership.js';
import type { MemberRecovery } from '../recovery/member-recovery.js';
import type { OpenSessions } from '../recovery/open-sessions.js';
import type { KeyManager } from '../replication/key-manager.js';
import type { DebtJournal } from '../replication/journal.js';
import type { Router } from '../routing/router.js';
import type { MultipartSettings } from './multipart-operation.js';
import type { SlotCapabilities } from './slot-capabilities.js';

/** The group as its sessions see it. */
export interface SlotContext {
  readonly membership: Membership;
  readonly router: Router;
  readonly catalog: Catalog;
  readonly discovery: ObjectDiscovery;
  readonly keys: KeyManager;
  readonly journal: DebtJournal;
  readonly login: GroupLogin;
  /** Settles what members owe once a login lets private objects be made. */
  readonly recovery: Pick<MemberRecovery, 'repairOwing'>;
  /** Where open sessions register, so that recovery can give a member their session objects again. */
  readonly openSessions: OpenSessions;
  /** Aborted once the group is closed. */
  readonly closed: AbortSignal;
  /** Where multi-part operations run and how much they keep for a replay. @default the primary, 1 MiB per operation, 4 MiB per session */
  readonly multipart?: MultipartSettings;
  /** What every serving member supports, cached (made by the slot when not given). */
  readonly capabilities?: SlotCapabilities;
}
