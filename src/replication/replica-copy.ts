/**
 * The two halves of making a replica, shared by key management (new objects), resync
 * (debts) and session restore (session objects of a recovered member): read what a copy
 * needs from a member that holds the object, and make the copy on another member.
 * Secret and private keys travel wrapped under the domain key (CKM_AES_KEY_WRAP_PAD);
 * public keys and data objects by their attributes.
 */
import { IDENTITY_ATTRIBUTES } from '../catalog/object-identity.js';
import type { Member } from '../member/member.js';
import type { Command, CommandName, CommandResult, Handle, ObjectKind, ReadAttribute, WireAttribute } from '../pkcs11/commands.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { toMechanism } from '../pkcs11/mechanism-table.js';
import type { Mechanism } from 'pkcs11js';
import { DomainError } from './domain-key.js';
import { classifyError } from '../errors/classification.js';
import { makesSessionObject, shortIf } from '../pkcs11/short-commands.js';
import { boolValue, CLASS, REPLICA_ATTRIBUTES, replicaTemplate, travelsWrapped, ulongOf } from './replica-template.js';
import { asSessionObject } from './creation-plan.js';

/** The mechanism every replica travels under. */
export const KWP = (): Mechanism => toMechanism('AES_KEY_WRAP_PAD');

/** Attributes read from a source object: identity and replica policy, never CKA_VALUE (read apart, for data objects only). */
const READ_TYPES = [...new Set([...IDENTITY_ATTRIBUTES, ...REPLICA_ATTRIBUTES])].filter((t) => t !== pkcs11js.CKA_VALUE);

/** What a replica of one object is made from. */
export interface ReplicaSource {
  /** The attributes read (identity and policy; CKA_VALUE for data objects). */
  readonly read: readonly ReadAttribute[];
  /** The key wrapped under the domain key, for secret and private keys. */
  readonly wrapped: Buffer | undefined;
  /** The unwrap template (keys) or creation template (public keys, data objects). */
  readonly template: WireAttribute[];
}

/** What a caller of {@link readReplicaSource} knows of the object, and what it needs. */
export interface ReadHow {
  /** A session object: its reads are short (see `short-commands.ts`). */
  readonly sessionObject?: boolean;
  /** Its class and key type, when known (a creation): spares the module two reads. */
  readonly kind?: ObjectKind | undefined;
  /**
   * Only its identity is needed, no copy will be made from this read: the identity
   * attributes are read (6 or 7 instead of 20 or more: the read was most of a session
   * key's creation) and the template is empty.
   */
  readonly identityOnly?: boolean;
}

/** Runs one command somewhere on a member: a pooled session, or a session the caller owns. */
export type Exec = <N extends CommandName>(member: Member, build: (session: Handle) => Extract<Command, { op: N }>) => Promise<CommandResult<N>>;

/** Runs on a pooled session of the member. */
export const pooled: Exec = (member, build) => member.run(build);

/**
 * Reads what a replica of `handle` needs from `source`. A key is wrapped whenever the
 * source has a domain key: the blob is also the key's fingerprint (AES key wrap with
 * padding is deterministic).
 *
 * @param domainKey the source's handle of the domain key
 * @param requireDomain whether a key without a domain key is an error (false when no other member needs a copy)
 * @param how what the caller knows of the object, and whether it needs a template (see {@link ReadHow})
 * @throws {@link DomainError} when a key must travel and the source has no domain key
 */
export async function readReplicaSource(source: Member, handle: Handle, domainKey: Handle | undefined, requireDomain = true, how: ReadHow = {}): Promise<ReplicaSource> {
  const sessionObject = how.sessionObject === true;
  const kind = how.kind !== undefined ? { kind: how.kind } : {};
  // Read and wrap at once (one round trip less on every creation): the wrap of an object
  // that is no key fails harmlessly and is ignored.
  const [attributes, speculative] = await Promise.all([
    source.run<'getAttributes'>((session) => shortIf(sessionObject, { op: 'getAttributes', session, object: handle, types: how.identityOnly === true ? IDENTITY_ATTRIBUTES : READ_TYPES, ...kind })),
    domainKey === undefined
      ? undefined
      : source
          .run<'wrapKey'>((session) => shortIf(sessionObject, { op: 'wrapKey', session, mechanism: KWP(), wrappingKey: domainKey, key: handle }))
          .catch((error: unknown) => error as Error),
  ]);
  const read = [...attributes];
  const objectClass = ulongOf(read.find((a) => a.type === pkcs11js.CKA_CLASS)?.value);
  // CKA_VALUE is read only for data objects (for their copies): key values have no business in this process.
  if (objectClass === CLASS.data && how.identityOnly !== true) {
    read.push(...(await source.run<'getAttributes'>((session) => shortIf(sessionObject, { op: 'getAttributes', session, object: handle, types: [pkcs11js.CKA_VALUE] }))));
  }
  let wrapped: Buffer | undefined;
  if (travelsWrapped(objectClass)) {
    if (domainKey === undefined && requireDomain) {
      throw new DomainError('the group has no security domain, so keys cannot be replicated: run `pkcs11-ha init` (or HaGroup.initDomain) first');
    }
    if (speculative instanceof Error) throw speculative;
    wrapped = speculative;
  }
  return { read, wrapped, template: how.identityOnly === true ? [] : replicaTemplate(read) };
}

/** The template that turns a session object's copy into a token object. */
const ON_TOKEN: readonly WireAttribute[] = [{ type: pkcs11js.CKA_TOKEN, value: true }];

/**
 * Makes a replica on `target`: C_UnwrapKey of the blob under the target's domain key, or
 * C_CreateObject from the template.
 *
 * A token object is made as a session object first and then copied to the token
 * (C_CopyObject with CKA_TOKEN=true), and the session object destroyed: SoftHSM writes a
 * new object's default attributes to its file one write each and the template after them,
 * while a copy writes the object in one transaction (`keygen/ec-p256/members3` went from
 * 1.55 to 0.56 of one member's creation with it: `npm run bench`). An object that may not
 * be copied or destroyed (CKA_COPYABLE or CKA_DESTROYABLE false), or that a copy refuses,
 * is made on the token directly. A kill during the copy leaves at most an object with no
 * attributes, which `removeHalfMade` (strays.ts) takes.
 *
 * @throws {@link DomainError} when a blob must be unwrapped and the target has no domain key
 */
export async function placeReplica(exec: Exec, target: Member, domainKey: Handle | undefined, wrapped: Buffer | undefined, template: readonly WireAttribute[]): Promise<Handle> {
  if (wrapped !== undefined && domainKey === undefined) throw new DomainError(`member ${target.name} has no domain key: a wrapped key cannot be placed there`);
  const make = (t: readonly WireAttribute[]): Promise<Handle> => {
    // A session object's copy touches no token file: short (see `short-commands.ts`).
    const short = makesSessionObject(t);
    return wrapped === undefined
      ? exec<'createObject'>(target, (session) => shortIf(short, { op: 'createObject', session, template: t }))
      : exec<'unwrapKey'>(target, (session) => shortIf(short, { op: 'unwrapKey', session, mechanism: KWP(), unwrappingKey: domainKey!, wrapped, template: t }));
  };
  const flag = (type: number) => boolValue(template.find((a) => a.type === type)?.value);
  if (makesSessionObject(template) || flag(pkcs11js.CKA_COPYABLE) === false || flag(pkcs11js.CKA_DESTROYABLE) === false) return make(template);
  const staged = await make(asSessionObject(template));
  const drop = () => exec<'destroyObject'>(target, (session) => shortIf(true, { op: 'destroyObject', session, object: staged })).catch(() => undefined);
  let copy: Handle;
  try {
    copy = await exec<'copyObject'>(target, (session) => ({ op: 'copyObject', session, object: staged, template: ON_TOKEN }));
  } catch (error) {
    // A member fault: the session object went with the member, and whether the copy was made is unknown (the caller's to settle).
    if (classifyError(error) === 'member') throw error;
    await drop();
    return make(template);
  }
  await drop();
  return copy;
}
