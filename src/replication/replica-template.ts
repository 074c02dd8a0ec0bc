/**
 * What of an object is copied to the other members, and the policy every replicated key
 * follows (CKA_EXTRACTABLE=true with CKA_WRAP_WITH_TRUSTED=true: only the trusted domain
 * key can ever export it).
 */
import { InvalidArgumentError } from '../errors/ha-error.js';
import type { ReadAttribute, WireAttribute } from '../pkcs11/commands.js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { Pkcs11Attribute } from '../pkcs11/template-codec.js';

const A = pkcs11js;

/** Attributes every replica carries over, when the object has them. */
const COMMON = [A.CKA_CLASS, A.CKA_TOKEN, A.CKA_PRIVATE, A.CKA_LABEL, A.CKA_MODIFIABLE, A.CKA_COPYABLE, A.CKA_DESTROYABLE];
// Policy travels with the key: a replica must be no weaker than the original. (Start and
// end dates are not copied: pkcs11js cannot read an empty date, which SoftHSM leaves.)
const KEY = [A.CKA_KEY_TYPE, A.CKA_ID, A.CKA_DERIVE, A.CKA_ALLOWED_MECHANISMS];
const SECRET = [A.CKA_SENSITIVE, A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_VERIFY, A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_EXTRACTABLE, A.CKA_WRAP_WITH_TRUSTED];
const PRIVATE = [A.CKA_SENSITIVE, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_SIGN_RECOVER, A.CKA_UNWRAP, A.CKA_EXTRACTABLE, A.CKA_WRAP_WITH_TRUSTED, A.CKA_ALWAYS_AUTHENTICATE];
const PUBLIC = [A.CKA_ENCRYPT, A.CKA_VERIFY, A.CKA_VERIFY_RECOVER, A.CKA_WRAP, A.CKA_MODULUS, A.CKA_PUBLIC_EXPONENT, A.CKA_EC_PARAMS, A.CKA_EC_POINT];
const DATA = [A.CKA_APPLICATION, A.CKA_VALUE, A.CKA_OBJECT_ID];

/** Every attribute any replica may need; read once from the source object. */
export const REPLICA_ATTRIBUTES: readonly number[] = [...new Set([...COMMON, ...KEY, ...SECRET, ...PRIVATE, ...PUBLIC, ...DATA])];

/** Object classes as numbers. */
export const CLASS = { secret: A.CKO_SECRET_KEY, private: A.CKO_PRIVATE_KEY, public: A.CKO_PUBLIC_KEY, data: A.CKO_DATA } as const;

/** Reads a CK_ULONG attribute value. */
export function ulongOf(value: Buffer | undefined): number | undefined {
  if (value === undefined || value.length === 0) return undefined;
  return value.length >= 8 ? Number(value.readBigUInt64LE(0)) : value.readUInt32LE(0);
}

/** True for classes whose material travels wrapped (secret and private keys). */
export function travelsWrapped(objectClass: number | undefined): boolean {
  return objectClass === CLASS.secret || objectClass === CLASS.private;
}

/**
 * The template to make a replica with, from the source object's attributes: for wrapped
 * keys, the unwrap template (no value, no public material: the blob carries those); for
 * public keys and data objects, the creation template (attributes only).
 */
export function replicaTemplate(read: readonly ReadAttribute[]): WireAttribute[] {
  const value = new Map(read.filter((a) => a.value !== undefined).map((a) => [a.type, a.value!] as const));
  const objectClass = ulongOf(value.get(A.CKA_CLASS));
  const types =
    objectClass === CLASS.secret ? [...COMMON, ...KEY, ...SECRET]
    : objectClass === CLASS.private ? [...COMMON, ...KEY, ...PRIVATE]
    : objectClass === CLASS.public ? [...COMMON, ...KEY, ...PUBLIC]
    : [...COMMON, ...DATA];
  const out: WireAttribute[] = [];
  for (const type of types) {
    const v = value.get(type);
    // Empty label or id: leave it to the default rather than set an empty value.
    if (v === undefined || (v.length === 0 && type !== A.CKA_VALUE)) continue;
    out.push({ type, value: v });
  }
  return out;
}

function find(template: readonly Pkcs11Attribute[], type: number): Pkcs11Attribute | undefined {
  return template.find((a) => a.type === type);
}

function set(template: Pkcs11Attribute[], type: number, value: boolean): void {
  const i = template.findIndex((a) => a.type === type);
  if (i >= 0) template[i] = { type, value };
  else template.push({ type, value });
}

/** What to do when an application asks for CKA_EXTRACTABLE=false. */
export type UnextractablePolicy = 'wrap-with-trusted' | 'reject';

/**
 * Applies the replication policy to the template of a secret or private key: sensitive
 * unless said otherwise (SoftHSM defaults to false), and extractable only under a
 * trusted key. An application asking for CKA_EXTRACTABLE=false gets, under the default
 * policy, CKA_EXTRACTABLE=true with CKA_WRAP_WITH_TRUSTED=true: the key can be exported
 * only under the domain key, that is only into another member of the group.
 *
 * @throws {@link InvalidArgumentError} for CKA_WRAP_WITH_TRUSTED=false, or CKA_EXTRACTABLE=false under 'reject'
 */
export function replicatedKeyTemplate(template: readonly Pkcs11Attribute[], policy: UnextractablePolicy): Pkcs11Attribute[] {
  const out = [...template];
  const extractable = find(out, A.CKA_EXTRACTABLE)?.value;
  if (extractable === false && policy === 'reject') {
    throw new InvalidArgumentError('CKA_EXTRACTABLE=false cannot be replicated (policy "reject"): replication exports keys under the domain key');
  }
  if (find(out, A.CKA_WRAP_WITH_TRUSTED)?.value === false) {
    throw new InvalidArgumentError('CKA_WRAP_WITH_TRUSTED=false is not allowed: replicated keys may only be wrapped by the trusted domain key');
  }
  if (find(out, A.CKA_SENSITIVE) === undefined) set(out, A.CKA_SENSITIVE, true);
  set(out, A.CKA_EXTRACTABLE, true);
  set(out, A.CKA_WRAP_WITH_TRUSTED, true);
  return out;
}

/**
 * A CK_BBOOL attribute's value as a template gives it: a boolean, or raw bytes (a Buffer
 * whose first byte is 0 or not), or a number. Undefined when absent or not a boolean.
 */
export function boolValue(value: Pkcs11Attribute['value']): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value !== 0;
  if (Buffer.isBuffer(value) && value.length > 0) return value[0] !== 0;
  return undefined;
}

/** The value of CKA_TOKEN in a template (default false, as PKCS#11 says). */
export function isTokenTemplate(template: readonly Pkcs11Attribute[]): boolean {
  return boolValue(find(template, A.CKA_TOKEN)?.value) === true;
}
