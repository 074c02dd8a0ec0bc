/**
 * Object discovery: searches members and links what they hold to virtual objects by
 * identity (see object-identity.ts). Members hand out new handles after a reconnect or a
 * logout, so virtual handles survive and member handles are found again here.
 */
import { classifyError } from '../errors/classification.js';
import { NoMemberAvailableError } from '../errors/ha-error.js';
import { isAmbiguousAnswer, isStaleHandle } from '../errors/return-code-rules.js';
import type { GroupEventSink } from '../events/group-events.js';
import type { Member } from '../member/member.js';
import type { Membership } from '../member/membership.js';
import type { Handle, ReadAttribute } from '../pkcs11/commands.js';
import { toMechanism } from '../pkcs11/mechanism-table.js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { Pkcs11Attribute } from '../pkcs11/template-codec.js';
import type { Catalog, ObjectHandle, VirtualObject } from './catalog.js';
import { IDENTITY_ATTRIBUTES, identityFrom } from './object-identity.js';

/** The group's domain key as discovery needs it (identity evidence; never handed out). */
export interface DiscoveryDomain {
  /** The member's handle of the domain key, if the group has a domain. */
  keyOf(member: Member): Handle | undefined;
  /** True for an object named like the domain key. */
  isDomainKey(label: Buffer | undefined, id: Buffer | undefined): boolean;
}

/** What members owe, as discovery needs it: a member is not linked to an object it owes. */
export interface DiscoveryDebts {
  owes(member: string, object: VirtualObject): boolean;
  /** Reads again what other processes recorded (a journal shared by several servers): a search then links no member that owes the object. */
  catchUp?(): Promise<unknown>;
}

/** Collaborators of {@link ObjectDiscovery}. */
export interface ObjectDiscoveryOptions {
  readonly membership: Membership;
  readonly catalog: Catalog;
  readonly domain: DiscoveryDomain;
  readonly debts: DiscoveryDebts;
  /** Told of identity conflicts (two different objects under one name). */
  readonly events: GroupEventSink;
}

/** What a search of one member found. */
interface Scan {
  readonly member: Member;
  readonly handles: readonly Handle[];
  /** Handles the catalog did not know, with their identity evidence. */
  readonly fresh: readonly { readonly handle: Handle; readonly read: readonly ReadAttribute[]; readonly wrapped: Buffer | undefined }[];
}

/** Finds objects on members and links them into the catalog. */
export class ObjectDiscovery {
  readonly #o: ObjectDiscoveryOptions;

  constructor(options: ObjectDiscoveryOptions) {
    this.#o = options;
  }

  /**
   * Searches every serving member and returns the virtual handles of what matches, in
   * handle order. A member failing under the search is skipped.
   *
   * @throws {@link NoMemberAvailableError} when no member could search
   */
  async findObjects(template: readonly Pkcs11Attribute[]): Promise<ObjectHandle[]> {
    // What another server made a member owe (a deletion it missed) must be known before linking; unreachable: the last view.
    await this.#o.debts.catchUp?.().catch(() => undefined);
    const members = this.#o.membership.all.filter((m) => m.serving);
    const found = await Promise.allSettled(members.map((m) => this.#scan(m, template)));
    const result = new Set<ObjectHandle>();
    let answered = 0;
    let lastError: unknown;
    // Adopt in member order so that virtual handle numbers do not depend on timing.
    for (const [i, r] of found.entries()) {
      if (r.status === 'rejected') {
        // An ambiguous answer from one member (CKR_GENERAL_ERROR) must not hide what the
        // others found; its probe decides whether it is sick (and fails it if so).
        const answer = isAmbiguousAnswer(r.reason);
        if (classifyError(r.reason) !== 'member' && !answer) throw r.reason;
        if (answer) void members[i]!.probe();
        lastError = r.reason;
        continue;
      }
      answered++;
      this.#adoptAll(r.value);
      for (const h of r.value.handles) {
        const object = this.#o.catalog.byMemberHandle(r.value.member.index, h);
        if (object) result.add(object.handle);
      }
    }
    if (answered === 0) throw lastError !== undefined && isAmbiguousAnswer(lastError) ? lastError : new NoMemberAvailableError('no member could search for objects', { cause: lastError });
    return [...result].sort((a, b) => a - b);
  }

  /**
   * Finds an object's holders again by its identity (virtual handles survive a logout).
   *
   * @param stale a member whose handle of the object was refused: that link goes first
   */
  async resolve(object: VirtualObject, stale?: number): Promise<void> {
    if (stale !== undefined) this.#o.catalog.unlink(object, stale);
    await this.findObjects(object.identity.search);
  }

  /** Finds a member's objects again (a reconnected member hands out new handles) and links them by identity. */
  async scanMember(member: Member): Promise<void> {
    this.#adoptAll(await this.#scan(member, []));
  }

  #adoptAll(scan: Scan): void {
    for (const f of scan.fresh) this.#adopt(scan.member, f.handle, f.read, f.wrapped);
  }

  /** Searches one member and reads the identity of every object it shows that the catalog does not know yet. */
  async #scan(m: Member, template: readonly Pkcs11Attribute[]): Promise<Scan> {
    const handles = await m.run<'findObjects'>((session) => ({ op: 'findObjects', session, template }));
    const domainKey = this.#o.domain.keyOf(m);
    const unknown = handles.filter((h) => this.#o.catalog.byMemberHandle(m.index, h) === undefined && !(domainKey?.equals(h) ?? false));
    // An object destroyed between the search and the read (a deletion running meanwhile) is not there any more: skipped.
    const read = await Promise.all(
      unknown.map((h) =>
        m.run<'getAttributes'>((session) => ({ op: 'getAttributes', session, object: h, types: IDENTITY_ATTRIBUTES })).catch((error: unknown) => {
          if (isStaleHandle(error)) return undefined;
          throw error;
        }),
      ),
    );
    // The domain key is the group's, never the application's: with it, any replicated
    // key could be unwrapped again as a non-sensitive copy.
    const value = (attrs: readonly ReadAttribute[], type: number) => attrs.find((a) => a.type === type)?.value;
    const kept = unknown.flatMap((handle, i) => {
      const r = read[i];
      return r === undefined || this.#o.domain.isDomainKey(value(r, pkcs11js.CKA_LABEL), value(r, pkcs11js.CKA_ID)) ? [] : [{ handle, read: r }];
    });
    const fresh = await Promise.all(kept.map(async (k) => ({ ...k, wrapped: await this.#domainWrap(m, k.handle, k.read) })));
    return { member: m, handles, fresh };
  }

  /**
   * The key wrapped under the domain key, as identity evidence (AES key wrap with padding
   * is deterministic). Undefined for objects that are not keys or cannot be wrapped.
   */
  async #domainWrap(member: Member, handle: Handle, read: readonly ReadAttribute[]): Promise<Buffer | undefined> {
    const domainKey = this.#o.domain.keyOf(member);
    const cls = read.find((a) => a.type === pkcs11js.CKA_CLASS)?.value;
    const objectClass = cls && cls.length >= 8 ? Number(cls.readBigUInt64LE(0)) : undefined;
    if (domainKey === undefined || (objectClass !== pkcs11js.CKO_SECRET_KEY && objectClass !== pkcs11js.CKO_PRIVATE_KEY) || handle.equals(domainKey)) return undefined;
    return member
      .run<'wrapKey'>((session) => ({ op: 'wrapKey', session, mechanism: toMechanism('AES_KEY_WRAP_PAD'), wrappingKey: domainKey, key: handle }))
      .catch(() => undefined);
  }

  #adopt(member: Member, handle: Handle, attributes: readonly ReadAttribute[], wrapped: Buffer | undefined): void {
    const { catalog, debts, events } = this.#o;
    const { object, conflict } = catalog.adopt(member.index, handle, identityFrom(attributes, wrapped));
    // A member that owes something for this object is not used for it until repaired.
    if (debts.owes(member.name, object)) catalog.unlink(object, member.index);
    if (conflict) {
      events.emit('identityConflict', { name: conflict.name, existing: conflict.existing, incoming: conflict.incoming, member: member.name });
    }
  }
}
