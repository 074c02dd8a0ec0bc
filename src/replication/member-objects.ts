/**
 * Finding objects on one member and proving what they are. Resync and stray cleanup
 * destroy objects on a member only when they can prove which object it is: the name
 * (class, key type, label, id, token) and the fingerprint must match. A handle alone
 * proves nothing (it changes at every reconnect).
 */
import { IDENTITY_ATTRIBUTES, identityFrom, ulong, type ObjectIdentity } from '../catalog/object-identity.js';
import { isStaleHandle } from '../errors/classification.js';
import type { Member } from '../member/member.js';
import type { Handle, WireAttribute } from '../pkcs11/commands.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { isDomainKeyName } from './domain-key.js';
import { KWP } from './replica-copy.js';
import { travelsWrapped } from './replica-template.js';

/** An object found on a member, with the identity it shows there. */
export interface FoundObject {
  readonly handle: Handle;
  readonly identity: ObjectIdentity;
}

/**
 * The identity an object shows on `member`: its identity attributes and, for secret and
 * private keys, the wrap under the member's domain key (deterministic, so the same key
 * gives the same fingerprint on every member). The blob is hashed, never kept.
 */
export async function identityOn(member: Member, handle: Handle, domainKey: Handle | undefined): Promise<ObjectIdentity> {
  const read = await member.run<'getAttributes'>((session) => ({ op: 'getAttributes', session, object: handle, types: IDENTITY_ATTRIBUTES }));
  const cls = read.find((a) => a.type === pkcs11js.CKA_CLASS)?.value;
  const objectClass = cls && cls.length >= 8 ? Number(cls.readBigUInt64LE(0)) : cls && cls.length >= 4 ? cls.readUInt32LE(0) : undefined;
  let wrapped: Buffer | undefined;
  if (domainKey !== undefined && travelsWrapped(objectClass) && !handle.equals(domainKey)) {
    // A key that cannot be wrapped (not made by the group) shows what else it has, or nothing.
    wrapped = await member
      .run<'wrapKey'>((session) => ({ op: 'wrapKey', session, mechanism: KWP(), wrappingKey: domainKey, key: handle }))
      .catch(() => undefined);
  }
  return identityFrom(read, wrapped);
}

/**
 * Whether a search on `member` may miss objects only because it is not logged in: the token
 * hides private objects then, and secret and private keys are private by default (a search
 * with no class may look for them too). Nothing such a search does not find is proved
 * absent (the chaos run: a recovery resynchronised while the application was between its
 * logout and its login, and settled deletions and changes of keys it could not see).
 */
export function outOfSight(member: Member, search: readonly WireAttribute[]): boolean {
  if (member.loggedIn) return false;
  const cls = search.find((a) => a.type === pkcs11js.CKA_CLASS)?.value;
  if (cls === undefined) return true;
  const n = Buffer.isBuffer(cls) ? ulong(cls) : Number(cls);
  return n === pkcs11js.CKO_SECRET_KEY || n === pkcs11js.CKO_PRIVATE_KEY;
}

/**
 * The objects on `member` that match `search`, each with its identity. The domain key is
 * never among them: the group never touches it as an application object.
 */
export async function findOn(member: Member, search: readonly WireAttribute[], domainKey: Handle | undefined): Promise<FoundObject[]> {
  const handles = await member.run<'findObjects'>((session) => ({ op: 'findObjects', session, template: search }));
  const out: FoundObject[] = [];
  for (const handle of handles) {
    if (domainKey?.equals(handle)) continue;
    let identity: ObjectIdentity;
    try {
      identity = await identityOn(member, handle, domainKey);
    } catch (error) {
      // Destroyed since the search (a session object: an application's, or one a replica is
      // made from, see placeReplica): it is not there.
      if (isStaleHandle(error)) continue;
      throw error;
    }
    if (isDomainKeyName(labelOf(identity), idOf(identity))) continue;
    out.push({ handle, identity });
  }
  return out;
}

/**
 * True when `found` is provably the object `ref` names: the same name, and the same
 * fingerprint. Without a fingerprint on either side only objects that have no key
 * material to show (data objects, certificates) can be proved, by name alone; a secret
 * or private key that shows nothing proves nothing.
 */
export function proves(ref: { readonly name: string; readonly fingerprint: string | undefined }, found: ObjectIdentity): boolean {
  if (ref.name !== found.name) return false;
  if (ref.fingerprint !== undefined) return found.fingerprint === ref.fingerprint;
  return found.fingerprint === undefined && !travelsWrapped(found.objectClass) && found.objectClass !== pkcs11js.CKO_PUBLIC_KEY;
}

function labelOf(identity: ObjectIdentity): Buffer | undefined {
  return identity.search.find((a) => a.type === pkcs11js.CKA_LABEL)?.value;
}

function idOf(identity: ObjectIdentity): Buffer | undefined {
  return identity.search.find((a) => a.type === pkcs11js.CKA_ID)?.value;
}
