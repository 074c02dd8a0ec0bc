/**
 * The attribute table: each friendly attribute name with its CKA_* number and the kind of
 * value it holds, and the names of the enumerated values (object classes, key types,
 * curves). The template codec encodes and decodes by this table.
 */
import { InvalidArgumentError } from '../errors/ha-error.js';
import { closest, quote } from './argument-checks.js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { FriendlyTemplate } from './template-codec.js';

/** Reads a constant from pkcs11js, falling back to the PKCS#11 value when it is absent. */
function constant(name: string, fallback: number): number {
  const value = (pkcs11js as unknown as Record<string, unknown>)[name];
  return typeof value === 'number' ? value : fallback;
}

// Missing from some pkcs11js builds (values from PKCS#11 v3.0, pkcs11t.h).
const CKK_EC_EDWARDS = constant('CKK_EC_EDWARDS', 0x40);
const CKK_EC_MONTGOMERY = constant('CKK_EC_MONTGOMERY', 0x41);

/** Friendly names of object classes (CKO_*). */
export type ObjectClassName = 'secretKey' | 'privateKey' | 'publicKey' | 'data' | 'certificate';

/** Friendly names of key types (CKK_*). */
export type KeyTypeName =
  | 'aes'
  | 'genericSecret'
  | 'rsa'
  | 'ec'
  | 'ecEdwards'
  | 'ecMontgomery'
  | 'des3'
  | 'dsa'
  | 'dh'
  | 'sha1Hmac'
  | 'sha224Hmac'
  | 'sha256Hmac'
  | 'sha384Hmac'
  | 'sha512Hmac';

/** Named elliptic curves that `curve` maps to DER-encoded OIDs in CKA_EC_PARAMS. */
export type CurveName = 'P-256' | 'P-384' | 'P-521';

// The names above are written out (not derived from the tables) so that the API report
// shows them; `satisfies` keeps each table to exactly its names.
const OBJECT_CLASS_NUMBERS = {
  secretKey: pkcs11js.CKO_SECRET_KEY,
  privateKey: pkcs11js.CKO_PRIVATE_KEY,
  publicKey: pkcs11js.CKO_PUBLIC_KEY,
  data: pkcs11js.CKO_DATA,
  certificate: pkcs11js.CKO_CERTIFICATE,
} as const satisfies Record<ObjectClassName, number>;

const KEY_TYPE_NUMBERS = {
  aes: pkcs11js.CKK_AES,
  genericSecret: pkcs11js.CKK_GENERIC_SECRET,
  rsa: pkcs11js.CKK_RSA,
  ec: pkcs11js.CKK_EC,
  ecEdwards: CKK_EC_EDWARDS,
  ecMontgomery: CKK_EC_MONTGOMERY,
  des3: pkcs11js.CKK_DES3,
  dsa: pkcs11js.CKK_DSA,
  dh: pkcs11js.CKK_DH,
  sha1Hmac: pkcs11js.CKK_SHA_1_HMAC,
  sha224Hmac: pkcs11js.CKK_SHA224_HMAC,
  sha256Hmac: pkcs11js.CKK_SHA256_HMAC,
  sha384Hmac: pkcs11js.CKK_SHA384_HMAC,
  sha512Hmac: pkcs11js.CKK_SHA512_HMAC,
} as const satisfies Record<KeyTypeName, number>;

/** DER encodings of the named-curve OIDs (OBJECT IDENTIFIER, tag 06), in hex. */
const CURVE_OIDS = {
  'P-256': '06082a8648ce3d030107', // 1.2.840.10045.3.1.7 prime256v1
  'P-384': '06052b81040022', // 1.3.132.0.34 secp384r1
  'P-521': '06052b81040023', // 1.3.132.0.35 secp521r1
} as const satisfies Record<CurveName, string>;

/** Object class name -> CKO_* number. */
export const OBJECT_CLASSES: ReadonlyMap<ObjectClassName, number> = new Map(
  Object.entries(OBJECT_CLASS_NUMBERS) as [ObjectClassName, number][],
);

/** Key type name -> CKK_* number. */
export const KEY_TYPES: ReadonlyMap<KeyTypeName, number> = new Map(Object.entries(KEY_TYPE_NUMBERS) as [KeyTypeName, number][]);

/** Curve name -> DER-encoded OID, in hex. */
export const CURVES: ReadonlyMap<CurveName, string> = new Map(Object.entries(CURVE_OIDS) as [CurveName, string][]);

/** The named curve whose DER OID `ecParams` is, if it is one of {@link CURVES}. */
export function curveOf(ecParams: Uint8Array): CurveName | undefined {
  const hex = Buffer.from(ecParams.buffer, ecParams.byteOffset, ecParams.byteLength).toString('hex');
  for (const [name, der] of CURVES) if (der === hex) return name;
  return undefined;
}

/**
 * How an attribute's value is encoded and decoded: `class`, `keyType` and `mechanism` are
 * CK_ULONGs that may be given by name; `ulong` a plain CK_ULONG; `bool` a CK_BBOOL;
 * `string` UTF-8; `id` bytes or a UTF-8 string; `bytes` bytes; `secret` bytes never shown
 * in a message; `exponent` big-endian bytes or a number; `ecParams` DER bytes, read back
 * with their curve name; `curve` a curve name for CKA_EC_PARAMS.
 */
export type AttributeKind =
  | 'class'
  | 'keyType'
  | 'string'
  | 'id'
  | 'bool'
  | 'ulong'
  | 'bytes'
  | 'secret'
  | 'exponent'
  | 'ecParams'
  | 'curve'
  | 'mechanism';

/** In template order: class, key type, then the rest. toRawTemplate emits attributes in this order. */
const FIELDS = [
  { name: 'class', type: pkcs11js.CKA_CLASS, kind: 'class' },
  { name: 'keyType', type: pkcs11js.CKA_KEY_TYPE, kind: 'keyType' },
  { name: 'label', type: pkcs11js.CKA_LABEL, kind: 'string' },
  { name: 'id', type: pkcs11js.CKA_ID, kind: 'id' },
  { name: 'application', type: pkcs11js.CKA_APPLICATION, kind: 'string' },
  { name: 'token', type: pkcs11js.CKA_TOKEN, kind: 'bool' },
  { name: 'private', type: pkcs11js.CKA_PRIVATE, kind: 'bool' },
  { name: 'modifiable', type: pkcs11js.CKA_MODIFIABLE, kind: 'bool' },
  { name: 'copyable', type: pkcs11js.CKA_COPYABLE, kind: 'bool' },
  { name: 'destroyable', type: pkcs11js.CKA_DESTROYABLE, kind: 'bool' },
  { name: 'sensitive', type: pkcs11js.CKA_SENSITIVE, kind: 'bool' },
  { name: 'extractable', type: pkcs11js.CKA_EXTRACTABLE, kind: 'bool' },
  { name: 'alwaysSensitive', type: pkcs11js.CKA_ALWAYS_SENSITIVE, kind: 'bool' },
  { name: 'neverExtractable', type: pkcs11js.CKA_NEVER_EXTRACTABLE, kind: 'bool' },
  { name: 'local', type: pkcs11js.CKA_LOCAL, kind: 'bool' },
  { name: 'encrypt', type: pkcs11js.CKA_ENCRYPT, kind: 'bool' },
  { name: 'decrypt', type: pkcs11js.CKA_DECRYPT, kind: 'bool' },
  { name: 'sign', type: pkcs11js.CKA_SIGN, kind: 'bool' },
  { name: 'verify', type: pkcs11js.CKA_VERIFY, kind: 'bool' },
  { name: 'signRecover', type: pkcs11js.CKA_SIGN_RECOVER, kind: 'bool' },
  { name: 'verifyRecover', type: pkcs11js.CKA_VERIFY_RECOVER, kind: 'bool' },
  { name: 'wrap', type: pkcs11js.CKA_WRAP, kind: 'bool' },
  { name: 'unwrap', type: pkcs11js.CKA_UNWRAP, kind: 'bool' },
  { name: 'derive', type: pkcs11js.CKA_DERIVE, kind: 'bool' },
  { name: 'wrapWithTrusted', type: pkcs11js.CKA_WRAP_WITH_TRUSTED, kind: 'bool' },
  { name: 'trusted', type: pkcs11js.CKA_TRUSTED, kind: 'bool' },
  { name: 'valueLen', type: pkcs11js.CKA_VALUE_LEN, kind: 'ulong' },
  { name: 'value', type: pkcs11js.CKA_VALUE, kind: 'secret' },
  { name: 'modulusBits', type: pkcs11js.CKA_MODULUS_BITS, kind: 'ulong' },
  { name: 'publicExponent', type: pkcs11js.CKA_PUBLIC_EXPONENT, kind: 'exponent' },
  { name: 'modulus', type: pkcs11js.CKA_MODULUS, kind: 'bytes' },
  { name: 'ecParams', type: pkcs11js.CKA_EC_PARAMS, kind: 'ecParams' },
  { name: 'curve', type: pkcs11js.CKA_EC_PARAMS, kind: 'curve' },
  { name: 'ecPoint', type: pkcs11js.CKA_EC_POINT, kind: 'bytes' },
  { name: 'keyGenMechanism', type: pkcs11js.CKA_KEY_GEN_MECHANISM, kind: 'mechanism' },
  { name: 'checkValue', type: pkcs11js.CKA_CHECK_VALUE, kind: 'bytes' },
] as const satisfies readonly { name: AttributeName; type: number; kind: AttributeKind }[];

/** A friendly attribute name: a key of `FriendlyTemplate`; each has one row in the attribute table. */
export type AttributeName = keyof FriendlyTemplate;

/** FriendlyTemplate keys without a row in the table: none (`satisfies` above: no row without a key). */
type KeysWithoutRow = Exclude<AttributeName, (typeof FIELDS)[number]['name']>;
// A key without a row fails to compile here, naming the key.
true satisfies [KeysWithoutRow] extends [never] ? true : KeysWithoutRow;

/** One row of the attribute table. */
export interface AttributeField {
  /** The friendly name, a key of `FriendlyTemplate`. */
  readonly name: AttributeName;
  /** The CKA_* number. */
  readonly type: number;
  /** How the value is encoded and decoded. */
  readonly kind: AttributeKind;
}

/** Every row of the attribute table, in template order. */
export const ATTRIBUTE_FIELDS: readonly AttributeField[] = FIELDS;

const FIELD_BY_NAME: ReadonlyMap<string, AttributeField> = new Map(FIELDS.map((f) => [f.name, f]));

/** Decoding rows per CKA number (`curve` shares CKA_EC_PARAMS with `ecParams` and is skipped). */
const FIELD_BY_TYPE: ReadonlyMap<number, AttributeField> = new Map(
  ATTRIBUTE_FIELDS.filter((f) => f.kind !== 'curve').map((f) => [f.type, f]),
);

/** The table row of a friendly name, or undefined if `name` is not one. */
export function fieldByName(name: string): AttributeField | undefined {
  return FIELD_BY_NAME.get(name);
}

/** The table row that decodes a CKA_* number, or undefined if it has no friendly name. */
export function fieldByType(type: number): AttributeField | undefined {
  return FIELD_BY_TYPE.get(type);
}

/** CKA_* number to the friendly attribute name, for diagnostics (e.g. `0x03` -> `label`). */
export const ATTRIBUTE_NAMES: ReadonlyMap<number, AttributeName> = new Map(
  [...FIELD_BY_TYPE.values()].map((f) => [f.type, f.name]),
);

/** An error for a name that is not an attribute name, suggesting the closest one. */
export function unknownAttributeError(what: string, key: unknown): InvalidArgumentError {
  const suggestion = typeof key === 'string' ? closest(key, FIELD_BY_NAME.keys()) : undefined;
  return new InvalidArgumentError(`unknown ${what} ${quote(key)}${suggestion ? `; did you mean ${quote(suggestion)}?` : ''}`);
}

/**
 * The CKA_* number of a friendly attribute name (`curve` gives CKA_EC_PARAMS).
 * @example attributeType('label') === pkcs11js.CKA_LABEL
 * @throws {@link InvalidArgumentError} for a name that is not a `FriendlyTemplate` key
 */
export function attributeType(name: AttributeName): number {
  const field = typeof name === 'string' ? FIELD_BY_NAME.get(name) : undefined;
  if (!field) throw unknownAttributeError('attribute name', name);
  return field.type;
}
