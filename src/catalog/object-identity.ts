/**
 * Which objects on different members are the same object. PKCS#11 has no free attribute
 * for a group-wide id, so identity is derived from what each member will tell:
 * a NAME (class, key type, label, id, token) that the application chose, and where the
 * token exposes something of the key material, a FINGERPRINT that proves two objects
 * with one name are the same key (and detects two different keys under one name).
 *
 * Fingerprints never contain key material: a truncated SHA-256 of a public value
 * (RSA modulus, EC point) or of the token's own check value.
 */
import { createHash } from 'node:crypto';
import { pkcs11js } from '../native/pkcs11js.js';
import type { ReadAttribute } from '../pkcs11/commands.js';

/** Attributes read from each member to establish identity. */
export const IDENTITY_ATTRIBUTES: readonly number[] = [
  pkcs11js.CKA_CLASS,
  pkcs11js.CKA_KEY_TYPE,
  pkcs11js.CKA_LABEL,
  pkcs11js.CKA_ID,
  pkcs11js.CKA_TOKEN,
  pkcs11js.CKA_CHECK_VALUE,
  pkcs11js.CKA_MODULUS,
  pkcs11js.CKA_EC_POINT,
  pkcs11js.CKA_EC_PARAMS,
];

/** An object's identity as read from one member. */
export interface ObjectIdentity {
  /** Class, key type, label, id and token flag: what the application named it. */
  readonly name: string;
  /** Evidence of the key material, when the member exposes any. */
  readonly fingerprint: string | undefined;
  /** CKO_* class number, or -1 when the member did not say. */
  readonly objectClass: number;
  readonly token: boolean;
  /** A search template that finds this object again (class, key type, label, id, token). */
  readonly search: readonly { readonly type: number; readonly value: Buffer }[];
  /**
   * The name was taken from the creation template and the key material was never read
   * (see {@link provisionalIdentity}): the fingerprint is unknown, not absent. The catalog
   * then matches the object again only by the member handle it was made under.
   */
  readonly provisional?: true;
}

function hex(value: Buffer | undefined): string {
  return value === undefined ? '-' : value.toString('hex');
}

/** A CK_ULONG attribute value as read (4 or 8 bytes, little-endian); undefined when empty or absent. */
export function ulong(value: Buffer | undefined): number | undefined {
  if (value === undefined || value.length === 0) return undefined;
  return value.length >= 8 ? Number(value.readBigUInt64LE(0)) : value.readUInt32LE(0);
}

function fingerprintOf(kind: string, value: Buffer): string {
  return `${kind}:${createHash('sha256').update(value).digest('hex').slice(0, 32)}`;
}

/**
 * Derives an identity from the values of {@link IDENTITY_ATTRIBUTES}.
 *
 * @param wrapped the key wrapped under the group's domain key, when it could be: AES key
 *   wrap with padding is deterministic, so equal blobs mean equal key material on any
 *   two members, for every kind of key (EC private keys expose nothing else)
 */
export function identityFrom(attributes: readonly ReadAttribute[], wrapped?: Buffer): ObjectIdentity {
  const get = (type: number): Buffer | undefined => attributes.find((a) => a.type === type)?.value;
  const objectClass = ulong(get(pkcs11js.CKA_CLASS)) ?? -1;
  const keyType = ulong(get(pkcs11js.CKA_KEY_TYPE));
  const token = get(pkcs11js.CKA_TOKEN)?.[0] === 1;
  const name = [objectClass, keyType ?? '-', hex(get(pkcs11js.CKA_LABEL)), hex(get(pkcs11js.CKA_ID)), token ? 'T' : 'S'].join('/');
  const checkValue = get(pkcs11js.CKA_CHECK_VALUE);
  const modulus = get(pkcs11js.CKA_MODULUS);
  const ecPoint = get(pkcs11js.CKA_EC_POINT);
  let fingerprint: string | undefined;
  if (modulus !== undefined && modulus.length > 0) fingerprint = fingerprintOf('modulus', modulus);
  else if (ecPoint !== undefined && ecPoint.length > 0) fingerprint = fingerprintOf('ec-point', ecPoint);
  else if (wrapped !== undefined) fingerprint = fingerprintOf('domain-wrap', wrapped);
  // SoftHSM leaves CKA_CHECK_VALUE empty on unwrapped keys: empty means "unknown", not "different".
  else if (checkValue !== undefined && checkValue.length > 0) fingerprint = fingerprintOf('kcv', checkValue);
  const search = [pkcs11js.CKA_CLASS, pkcs11js.CKA_KEY_TYPE, pkcs11js.CKA_LABEL, pkcs11js.CKA_ID, pkcs11js.CKA_TOKEN].flatMap((type) => {
    const value = get(type);
    return value === undefined ? [] : [{ type, value }];
  });
  return { name, fingerprint, objectClass, token, search };
}

/** CK_ULONG values as a module reports them (8 bytes, little-endian), by value: classes and key types are few. */
const ulongBytes = new Map<number, Buffer>();
function ulongOf(value: number): Buffer {
  let b = ulongBytes.get(value);
  if (b === undefined) {
    b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(value));
    if (ulongBytes.size < 256) ulongBytes.set(value, b);
  }
  return b;
}

const FALSE = Buffer.from([0]);
const TRUE = Buffer.from([1]);
const EMPTY = Buffer.alloc(0);

/** The bytes a module reports for a template value given as bytes (copied: the caller's may change) or text; undefined for other forms. */
function asBytes(value: unknown): Buffer | undefined {
  if (value === undefined) return EMPTY;
  if (Buffer.isBuffer(value)) return Buffer.from(value);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return undefined;
}

/**
 * The identity a key about to be created will show, from its creation template: class
 * and key type as the creation makes them, label and id as the template gives them
 * (empty when absent, as a module reports them), without reading anything: what
 * {@link identityFrom} gives for those values. The fingerprint is left unknown
 * (`provisional`): reading it cost as much as a session key's generation, and only
 * another member ever needs it.
 *
 * @returns undefined when the class is not a key's, or the label or id is given in a form
 *   whose bytes the module decides (then read the object)
 */
export function provisionalIdentity(
  objectClass: number,
  keyType: number | undefined,
  template: readonly { readonly type: number; readonly value?: unknown }[],
  token: boolean,
): ObjectIdentity | undefined {
  const isKey = objectClass === pkcs11js.CKO_SECRET_KEY || objectClass === pkcs11js.CKO_PRIVATE_KEY || objectClass === pkcs11js.CKO_PUBLIC_KEY;
  if (!isKey || keyType === undefined || !Number.isSafeInteger(objectClass) || !Number.isSafeInteger(keyType) || objectClass < 0 || keyType < 0) return undefined;
  let label: Buffer | undefined = EMPTY;
  let id: Buffer | undefined = EMPTY;
  for (const a of template) {
    if (a.type === pkcs11js.CKA_LABEL) label = asBytes(a.value);
    else if (a.type === pkcs11js.CKA_ID) id = asBytes(a.value);
  }
  if (label === undefined || id === undefined) return undefined;
  // As identityFrom names and searches (see there); kept in step by a test.
  const name = `${objectClass}/${keyType}/${label.toString('hex')}/${id.toString('hex')}/${token ? 'T' : 'S'}`;
  const search = [
    { type: pkcs11js.CKA_CLASS, value: ulongOf(objectClass) },
    { type: pkcs11js.CKA_KEY_TYPE, value: ulongOf(keyType) },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: id },
    { type: pkcs11js.CKA_TOKEN, value: token ? TRUE : FALSE },
  ];
  return { name, fingerprint: undefined, objectClass, token, search, provisional: true };
}

/**
 * The identity an object shows once `template` is set on it (C_SetAttributeValue): its
 * label and id as the template gives them, the rest unchanged (class, key type and token
 * flag cannot change; neither does the key material, so the fingerprint is kept). Computed,
 * not read back: a member failing after the change must not leave the catalog searching
 * for a name no member carries any more.
 *
 * @returns undefined when the label or id is given in a form whose bytes the module decides
 */
export function renamedIdentity(identity: ObjectIdentity, template: readonly { readonly type: number; readonly value?: unknown }[]): ObjectIdentity | undefined {
  const values = new Map(identity.search.map((a) => [a.type, a.value]));
  for (const a of template) {
    if (a.type !== pkcs11js.CKA_LABEL && a.type !== pkcs11js.CKA_ID) continue;
    const bytes = asBytes(a.value);
    if (bytes === undefined) return undefined;
    values.set(a.type, bytes);
  }
  const renamed = identityFrom([...values].map(([type, value]) => ({ type, value })));
  return { ...renamed, fingerprint: identity.fingerprint, ...(identity.provisional ? { provisional: true as const } : {}) };
}

/**
 * True when two identities may be the same object: same name and no contradicting
 * evidence. For secret and private keys, evidence on one side and none on the other also
 * contradicts: a member that cannot show its key's material must not join a key that can.
 */
export function sameObject(a: ObjectIdentity, b: ObjectIdentity): boolean {
  if (a.name !== b.name) return false;
  if (a.fingerprint !== undefined && b.fingerprint !== undefined) return a.fingerprint === b.fingerprint;
  if (a.fingerprint === b.fingerprint) return true;
  const secretOrPrivate = a.objectClass === pkcs11js.CKO_SECRET_KEY || a.objectClass === pkcs11js.CKO_PRIVATE_KEY;
  return !secretOrPrivate;
}
