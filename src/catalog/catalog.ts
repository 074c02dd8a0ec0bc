/**
 * The group's table of virtual objects. The application only ever sees virtual handles:
 * small numbers, stable for the life of the process, each mapped to one handle per
 * member that holds the object. An object is used only on members in its `holders`.
 */
import type { Handle } from '../pkcs11/commands.js';
import { sameObject, type ObjectIdentity } from './object-identity.js';

/** A virtual object handle, as the application sees it. */
export type ObjectHandle = number;

/** One object of the group and where it lives. */
export interface VirtualObject {
  readonly handle: ObjectHandle;
  /** Changes only through {@link Catalog.reindex} (a label or id was changed). */
  identity: ObjectIdentity;
  /** Member index -> that member's handle for the object. */
  readonly holders: Map<number, Handle>;
  /** CKA_VALUE_LEN given when the group made this secret key (slot/value-len.ts). */
  valueLen?: number;
  /** An attribute change in progress: until it settles, members may show the object under different names. */
  changing?: Promise<void>;
}

/**
 * Marks `object` as changing while `change` runs (see {@link VirtualObject.changing}), so
 * that a search for its holders waits for the members to agree on its name first.
 */
export function trackChange(object: VirtualObject, change: Promise<void>): Promise<void> {
  const tracked: Promise<void> = change.finally(() => {
    if (object.changing === tracked) delete object.changing;
  });
  object.changing = tracked;
  return tracked;
}

/** Two objects share a name but not their key material. */
export interface IdentityConflict {
  readonly name: string;
  readonly existing: ObjectHandle;
  readonly incoming: ObjectHandle;
  readonly member: number;
}

/** Virtual handles and what they map to. */
export class Catalog {
  readonly #byHandle = new Map<ObjectHandle, VirtualObject>();
  /** Per member: its handle (hex) -> object. Member handles are stable while the member stays connected. */
  readonly #byMemberHandle = new Map<number, Map<string, VirtualObject>>();
  readonly #byName = new Map<string, VirtualObject[]>();
  /**
   * Per member: handle (hex) -> an object with a provisional identity (see
   * `provisionalIdentity`) made there under that handle. Kept when holders are forgotten
   * (a logout, a member fault): with no fingerprint to prove it, such an object is found
   * again only under the handle it was made under.
   */
  readonly #madeUnder = new Map<number, Map<string, VirtualObject>>();
  /** The entries of {@link #madeUnder} per object: member index and handle (hex). */
  readonly #madeUnderOf = new Map<VirtualObject, [number, string][]>();
  #next: ObjectHandle = 1;

  /** The object behind a virtual handle, if it exists. */
  get(handle: ObjectHandle): VirtualObject | undefined {
    return this.#byHandle.get(handle);
  }

  /** The object a member's handle already maps to, if any. */
  byMemberHandle(member: number, handle: Handle): VirtualObject | undefined {
    return this.#byMemberHandle.get(member)?.get(handle.toString('hex'));
  }

  /** Every object the catalog knows, in handle order. */
  objects(): IterableIterator<VirtualObject> {
    return this.#byHandle.values();
  }

  /** How many objects the catalog knows. */
  get size(): number {
    return this.#byHandle.size;
  }

  /**
   * Records that `member` holds an object with `identity` under `handle`: joins the
   * object of the same identity that this member does not hold yet, or creates one.
   * @returns the object, and a conflict when a same-named object has different material
   */
  adopt(member: number, handle: Handle, identity: ObjectIdentity): { object: VirtualObject; conflict?: IdentityConflict } {
    const key = handle.toString('hex');
    const known = this.#byMemberHandle.get(member)?.get(key);
    if (known) return { object: known };
    const madeHere = this.#madeUnder.get(member)?.get(key);
    if (madeHere !== undefined && !madeHere.holders.has(member) && madeHere.identity.name === identity.name) {
      // Found again under the handle it was made under: the same object, whose identity is now read.
      this.reindex(madeHere, identity);
      this.#link(madeHere, member, handle);
      return { object: madeHere };
    }
    const sameName = this.#byName.get(identity.name) ?? [];
    let conflictWith: VirtualObject | undefined;
    for (const candidate of sameName) {
      // Nothing proves or disproves a provisional identity by name: never joined, never a conflict.
      if (candidate.identity.provisional) continue;
      if (!candidate.holders.has(member) && sameObject(candidate.identity, identity)) {
        // The first holder may have shown no evidence; keep the first that any holder shows,
        // so that a later holder with different material cannot join too.
        if (candidate.identity.fingerprint === undefined && identity.fingerprint !== undefined) {
          candidate.identity = { ...candidate.identity, fingerprint: identity.fingerprint };
        }
        this.#link(candidate, member, handle);
        return { object: candidate };
      }
      // Same name, different material: two keys the application cannot tell apart by name.
      if (!sameObject(candidate.identity, identity)) conflictWith ??= candidate;
    }
    const object = this.create(identity);
    this.#link(object, member, handle);
    if (conflictWith === undefined) return { object };
    return { object, conflict: { name: identity.name, existing: conflictWith.handle, incoming: object.handle, member } };
  }

  /** A new virtual object with no holders yet. */
  create(identity: ObjectIdentity): VirtualObject {
    const object: VirtualObject = { handle: this.#next++, identity, holders: new Map() };
    this.#byHandle.set(object.handle, object);
    const list = this.#byName.get(identity.name);
    if (list) list.push(object);
    else this.#byName.set(identity.name, [object]);
    return object;
  }

  /** Adds a holder to an object. */
  link(object: VirtualObject, member: number, handle: Handle): void {
    this.#link(object, member, handle);
  }

  /** Removes one holder (it missed a change and owes it). */
  unlink(object: VirtualObject, member: number): void {
    const handle = object.holders.get(member);
    if (handle === undefined) return;
    object.holders.delete(member);
    this.#byMemberHandle.get(member)?.delete(handle.toString('hex'));
  }

  /** Gives an object a new identity (after its label or id changed). */
  reindex(object: VirtualObject, identity: ObjectIdentity): void {
    const list = this.#byName.get(object.identity.name);
    if (list) {
      const i = list.indexOf(object);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.#byName.delete(object.identity.name);
    }
    if (object.identity.provisional && !identity.provisional) this.#unhint(object);
    object.identity = identity;
    const next = this.#byName.get(identity.name);
    if (next) next.push(object);
    else this.#byName.set(identity.name, [object]);
  }

  /** Forgets an object entirely (it was destroyed). */
  remove(object: VirtualObject): void {
    this.#byHandle.delete(object.handle);
    if (object.identity.provisional) this.#unhint(object);
    for (const [member, handle] of object.holders) this.#byMemberHandle.get(member)?.delete(handle.toString('hex'));
    const list = this.#byName.get(object.identity.name);
    if (list) {
      const i = list.indexOf(object);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.#byName.delete(object.identity.name);
    }
  }

  /** Forgets every member handle of every object; the objects and their virtual handles stay. */
  forgetHolders(): void {
    this.#byMemberHandle.clear();
    for (const object of this.#byHandle.values()) object.holders.clear();
  }

  /** Forgets every handle of a member (its sessions and handles are gone). */
  forgetMember(member: number): void {
    this.#byMemberHandle.delete(member);
    for (const object of this.#byHandle.values()) object.holders.delete(member);
  }

  #link(object: VirtualObject, member: number, handle: Handle): void {
    object.holders.set(member, handle);
    let map = this.#byMemberHandle.get(member);
    if (map === undefined) this.#byMemberHandle.set(member, (map = new Map()));
    const key = handle.toString('hex');
    map.set(key, object);
    if (object.identity.provisional) {
      let made = this.#madeUnder.get(member);
      if (made === undefined) this.#madeUnder.set(member, (made = new Map()));
      made.set(key, object);
      const entries = this.#madeUnderOf.get(object);
      if (entries === undefined) this.#madeUnderOf.set(object, [[member, key]]);
      else entries.push([member, key]);
    }
  }

  /** Forgets the handles a provisional object was made under (it is gone, or its identity was read). */
  #unhint(object: VirtualObject): void {
    for (const [member, key] of this.#madeUnderOf.get(object) ?? []) {
      const made = this.#madeUnder.get(member);
      if (made?.get(key) === object) made.delete(key);
    }
    this.#madeUnderOf.delete(object);
  }
}
