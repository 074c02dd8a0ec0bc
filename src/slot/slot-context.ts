/**
 * What a virtual session needs from its group, as an interface so that the slot layer
 * does not depend on the group's internals (and tests can stand one up).
 */
import type { Catalog, ObjectHandle } from '../catalog/catalog.js';
import type { Member } from '../member/member.js';
import type { Pkcs11Attribute } from '../pkcs11/templates.js';
import type { Router } from '../routing/router.js';
import type { KeyManager } from '../replication/key-manager.js';
import type { Journal } from '../replication/journal.js';

/** The group as its sessions see it. */
export interface SlotContext {
  readonly members: readonly Member[];
  readonly router: Router;
  readonly catalog: Catalog;
  readonly keys: KeyManager;
  readonly journal: Journal;
  /** Throws `ClosedError` once the group is closed. */
  checkOpen(): void;
  login(userType: number, pin: string): Promise<void>;
  logout(): Promise<void>;
  findObjects(template: readonly Pkcs11Attribute[]): Promise<ObjectHandle[]>;
}
