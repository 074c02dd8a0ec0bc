/**
 * Attribute templates and mechanisms: the friendly, typed forms that callers of pkcs11-ha
 * write, and their conversion to and from the raw forms that pkcs11js takes and returns.
 *
 * Everything produced here is made of plain objects, numbers, booleans, strings and
 * Buffers, so it can be posted to a worker thread with structured clone. Every Buffer
 * produced is a fresh, exact-size, unpooled copy: posting a view of Node's shared 8 KiB
 * Buffer pool would clone the whole pool, including bytes that belong to other callers.
 *
 * Error messages never contain the bytes of attribute values: only attribute names, the
 * JavaScript type received and, for enumerations such as the object class, the name given.
 */
import { createRequire } from 'node:module';
import os from 'node:os';
import type { GcmParams, Mechanism, RsaOAEP, RsaPSS } from 'pkcs11js';
import { InvalidArgumentError } from '../errors/ha-error.js';

const require = createRequire(import.meta.url);
const pkcs11js = require('pkcs11js') as typeof import('pkcs11js');

// ---------------------------------------------------------------------------------------
// Constants missing from some pkcs11js builds (values from PKCS#11 v3.0, pkcs11t.h).
// ---------------------------------------------------------------------------------------

/** Reads a constant from pkcs11js, falling back to the PKCS#11 value when it is absent. */
function constant(name: string, fallback: number): number {
  const value = (pkcs11js as unknown as Record<string, unknown>)[name];
  return typeof value === 'number' ? value : fallback;
}

const CKK_EC_EDWARDS = constant('CKK_EC_EDWARDS', 0x40);
const CKK_EC_MONTGOMERY = constant('CKK_EC_MONTGOMERY', 0x41);
const CKZ_DATA_SPECIFIED = constant('CKZ_DATA_SPECIFIED', 0x1);

/** Largest value pkcs11js can pass for a CK_ULONG (it reads numbers as uint32). */
const MAX_ULONG = 0xffff_ffff;

// ---------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------

/** One attribute as pkcs11js takes it, except that a value may also be a `Uint8Array`. */
export type RawAttribute = { type: number; value?: number | boolean | string | Buffer | Uint8Array };

/** A template in raw form: CKA_* numbers and values. */
export type RawTemplate = readonly RawAttribute[];

/**
 * One attribute after normalisation: Uint8Array values are converted to Buffer. Assignable
 * both to {@link RawAttribute} and to pkcs11js's `Attribute`.
 */
export type Pkcs11Attribute = { type: number; value?: number | boolean | string | Buffer };

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

/**
 * A template written with camelCase names. Every field is optional; `undefined` fields are
 * left out. Use {@link toRawTemplate} to convert it.
 */
export interface FriendlyTemplate {
  /** CKA_CLASS: object class, by name or CKO_* number. */
  class?: ObjectClassName | number;
  /** CKA_KEY_TYPE: key type, by name or CKK_* number. */
  keyType?: KeyTypeName | number;
  /** CKA_LABEL: label, UTF-8. */
  label?: string;
  /** CKA_ID: key identifier; a string is encoded as UTF-8. */
  id?: string | Buffer | Uint8Array;
  /** CKA_APPLICATION: description of the application that manages a data object, UTF-8. */
  application?: string;
  /** CKA_TOKEN: true for a token object, false for a session object. */
  token?: boolean;
  /** CKA_PRIVATE: true if the object can be accessed only after login. */
  private?: boolean;
  /** CKA_MODIFIABLE: true if the object's attributes can be modified. */
  modifiable?: boolean;
  /** CKA_COPYABLE: true if the object can be copied with C_CopyObject. */
  copyable?: boolean;
  /** CKA_DESTROYABLE: true if the object can be destroyed with C_DestroyObject. */
  destroyable?: boolean;
  /** CKA_SENSITIVE: true if the key's secret value cannot be revealed in plaintext. */
  sensitive?: boolean;
  /** CKA_EXTRACTABLE: true if the key can be wrapped out of the token. */
  extractable?: boolean;
  /** CKA_ALWAYS_SENSITIVE: true if CKA_SENSITIVE has always been true (read-only). */
  alwaysSensitive?: boolean;
  /** CKA_NEVER_EXTRACTABLE: true if CKA_EXTRACTABLE has never been true (read-only). */
  neverExtractable?: boolean;
  /** CKA_LOCAL: true if the key was generated on the token (read-only). */
  local?: boolean;
  /** CKA_ENCRYPT: true if the key supports encryption. */
  encrypt?: boolean;
  /** CKA_DECRYPT: true if the key supports decryption. */
  decrypt?: boolean;
  /** CKA_SIGN: true if the key supports signatures and MACs. */
  sign?: boolean;
  /** CKA_VERIFY: true if the key supports verification of signatures and MACs. */
  verify?: boolean;
  /** CKA_SIGN_RECOVER: true if the key supports signatures with data recovery. */
  signRecover?: boolean;
  /** CKA_VERIFY_RECOVER: true if the key supports verification with data recovery. */
  verifyRecover?: boolean;
  /** CKA_WRAP: true if the key can wrap other keys. */
  wrap?: boolean;
  /** CKA_UNWRAP: true if the key can unwrap other keys. */
  unwrap?: boolean;
  /** CKA_DERIVE: true if other keys can be derived from the key. */
  derive?: boolean;
  /** CKA_WRAP_WITH_TRUSTED: true if the key can only be wrapped with a trusted wrapping key. */
  wrapWithTrusted?: boolean;
  /** CKA_TRUSTED: true if the key can wrap keys that have CKA_WRAP_WITH_TRUSTED. */
  trusted?: boolean;
  /** CKA_VALUE_LEN: length of a secret key's value in bytes. */
  valueLen?: number;
  /** CKA_VALUE: the object's value. May be key material: never shown in error messages. */
  value?: Buffer | Uint8Array;
  /** CKA_MODULUS_BITS: length of an RSA modulus in bits. */
  modulusBits?: number;
  /** CKA_PUBLIC_EXPONENT: RSA public exponent, big-endian bytes or a number (e.g. 65537). */
  publicExponent?: Buffer | Uint8Array | number;
  /** CKA_MODULUS: RSA modulus, big-endian bytes. */
  modulus?: Buffer | Uint8Array;
  /** CKA_EC_PARAMS: DER-encoded EC domain parameters (usually a named-curve OID). */
  ecParams?: Buffer | Uint8Array;
  /** CKA_EC_PARAMS, by curve name; may be given with `ecParams` only if they agree. */
  curve?: CurveName;
  /** CKA_EC_POINT: DER-encoded EC public point. */
  ecPoint?: Buffer | Uint8Array;
  /** CKA_KEY_GEN_MECHANISM: the mechanism that generated the key, CKM_* number or friendly name. */
  keyGenMechanism?: number | SimpleMechanismName;
  /** CKA_CHECK_VALUE: key check value. */
  checkValue?: Buffer | Uint8Array;
}

/**
 * Attributes read back from a token, decoded by {@link fromRawAttributes}. Assignable to
 * {@link FriendlyTemplate}. Class and key type are names when known, numbers otherwise.
 */
export interface FriendlyAttributes {
  /** CKA_CLASS. */
  class?: ObjectClassName | number;
  /** CKA_KEY_TYPE. */
  keyType?: KeyTypeName | number;
  /** CKA_LABEL, decoded as UTF-8. */
  label?: string;
  /** CKA_ID. */
  id?: Buffer;
  /** CKA_APPLICATION, decoded as UTF-8. */
  application?: string;
  /** CKA_TOKEN. */
  token?: boolean;
  /** CKA_PRIVATE. */
  private?: boolean;
  /** CKA_MODIFIABLE. */
  modifiable?: boolean;
  /** CKA_COPYABLE. */
  copyable?: boolean;
  /** CKA_DESTROYABLE. */
  destroyable?: boolean;
  /** CKA_SENSITIVE. */
  sensitive?: boolean;
  /** CKA_EXTRACTABLE. */
  extractable?: boolean;
  /** CKA_ALWAYS_SENSITIVE. */
  alwaysSensitive?: boolean;
  /** CKA_NEVER_EXTRACTABLE. */
  neverExtractable?: boolean;
  /** CKA_LOCAL. */
  local?: boolean;
  /** CKA_ENCRYPT. */
  encrypt?: boolean;
  /** CKA_DECRYPT. */
  decrypt?: boolean;
  /** CKA_SIGN. */
  sign?: boolean;
  /** CKA_VERIFY. */
  verify?: boolean;
  /** CKA_SIGN_RECOVER. */
  signRecover?: boolean;
  /** CKA_VERIFY_RECOVER. */
  verifyRecover?: boolean;
  /** CKA_WRAP. */
  wrap?: boolean;
  /** CKA_UNWRAP. */
  unwrap?: boolean;
  /** CKA_DERIVE. */
  derive?: boolean;
  /** CKA_WRAP_WITH_TRUSTED. */
  wrapWithTrusted?: boolean;
  /** CKA_TRUSTED. */
  trusted?: boolean;
  /** CKA_VALUE_LEN. */
  valueLen?: number;
  /** CKA_VALUE. */
  value?: Buffer;
  /** CKA_MODULUS_BITS. */
  modulusBits?: number;
  /** CKA_PUBLIC_EXPONENT, big-endian bytes. */
  publicExponent?: Buffer;
  /** CKA_MODULUS. */
  modulus?: Buffer;
  /** CKA_EC_PARAMS. */
  ecParams?: Buffer;
  /** Set when CKA_EC_PARAMS is the DER OID of a known named curve. */
  curve?: CurveName;
  /** CKA_EC_POINT. */
  ecPoint?: Buffer;
  /** CKA_KEY_GEN_MECHANISM, a CKM_* number. */
  keyGenMechanism?: number;
  /** CKA_CHECK_VALUE. */
  checkValue?: Buffer;
}

/** A template in either form. */
export type TemplateInput = FriendlyTemplate | RawTemplate;

// ---------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------

const OBJECT_CLASSES: ReadonlyMap<ObjectClassName, number> = new Map<ObjectClassName, number>([
  ['secretKey', pkcs11js.CKO_SECRET_KEY],
  ['privateKey', pkcs11js.CKO_PRIVATE_KEY],
  ['publicKey', pkcs11js.CKO_PUBLIC_KEY],
  ['data', pkcs11js.CKO_DATA],
  ['certificate', pkcs11js.CKO_CERTIFICATE],
]);

const KEY_TYPES: ReadonlyMap<KeyTypeName, number> = new Map<KeyTypeName, number>([
  ['aes', pkcs11js.CKK_AES],
  ['genericSecret', pkcs11js.CKK_GENERIC_SECRET],
  ['rsa', pkcs11js.CKK_RSA],
  ['ec', pkcs11js.CKK_EC],
  ['ecEdwards', CKK_EC_EDWARDS],
  ['ecMontgomery', CKK_EC_MONTGOMERY],
  ['des3', pkcs11js.CKK_DES3],
  ['dsa', pkcs11js.CKK_DSA],
  ['dh', pkcs11js.CKK_DH],
  ['sha1Hmac', pkcs11js.CKK_SHA_1_HMAC],
  ['sha224Hmac', pkcs11js.CKK_SHA224_HMAC],
  ['sha256Hmac', pkcs11js.CKK_SHA256_HMAC],
  ['sha384Hmac', pkcs11js.CKK_SHA384_HMAC],
  ['sha512Hmac', pkcs11js.CKK_SHA512_HMAC],
]);

/** DER encodings of the named-curve OIDs (OBJECT IDENTIFIER, tag 06). */
const CURVES: ReadonlyMap<CurveName, string> = new Map<CurveName, string>([
  ['P-256', '06082a8648ce3d030107'], // 1.2.840.10045.3.1.7 prime256v1
  ['P-384', '06052b81040022'], // 1.3.132.0.34 secp384r1
  ['P-521', '06052b81040023'], // 1.3.132.0.35 secp521r1
]);

/** How a field is encoded and decoded. */
type Kind =
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

interface FieldSpec {
  readonly name: keyof FriendlyTemplate;
  readonly type: number;
  readonly kind: Kind;
}

/** In FriendlyTemplate declaration order; toRawTemplate emits attributes in this order. */
const FIELDS: readonly FieldSpec[] = [
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
];

const FIELD_BY_NAME: ReadonlyMap<string, FieldSpec> = new Map(FIELDS.map((f) => [f.name, f]));

/** Decoding spec per CKA number (`curve` shares CKA_EC_PARAMS with `ecParams` and is skipped). */
const FIELD_BY_TYPE: ReadonlyMap<number, FieldSpec> = new Map(
  FIELDS.filter((f) => f.kind !== 'curve').map((f) => [f.type, f]),
);

/** CKA_* number to the friendly attribute name, for diagnostics (e.g. `0x03` -> `label`). */
export const ATTRIBUTE_NAMES: ReadonlyMap<number, string> = new Map(
  [...FIELD_BY_TYPE.values()].map((f) => [f.type, f.name]),
);

/**
 * The CKA_* number of a friendly attribute name (`curve` gives CKA_EC_PARAMS).
 * @throws InvalidArgumentError for a name that is not a {@link FriendlyTemplate} key
 */
export function attributeType(name: keyof FriendlyTemplate): number {
  const field = typeof name === 'string' ? FIELD_BY_NAME.get(name) : undefined;
  if (!field) throw unknownKeyError('attribute name', name);
  return field.type;
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/** The JavaScript type of a value, for messages; never the value itself. */
function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (Buffer.isBuffer(value)) return 'Buffer';
  if (value instanceof Uint8Array) return 'Uint8Array';
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'number (NaN)';
    if (!Number.isFinite(value)) return 'number (non-finite)';
    if (!Number.isInteger(value)) return 'number (not an integer)';
    if (value < 0) return 'number (negative)';
    if (value > MAX_ULONG) return 'number (above 0xffffffff)';
    return 'number';
  }
  if (typeof value === 'object') {
    const ctor = (value as { constructor?: { name?: unknown } }).constructor;
    const ctorName = typeof ctor?.name === 'string' ? ctor.name : '';
    return ctorName && ctorName !== 'Object' ? ctorName : 'object';
  }
  return typeof value;
}

/** Quotes a caller-given name (never key material) for a message, bounded in length. */
function quote(name: unknown): string {
  const text = String(name);
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 61)}...` : text);
}

function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

/** An exact-size, unpooled Buffer copy of `bytes` (safe to post to a worker). */
function ownBuffer(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(bytes.length);
  out.set(bytes);
  return out;
}

function isUlong(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_ULONG;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The known name closest to `given`, if any is close enough to be a likely typo. */
function closest(given: string, known: readonly string[]): string | undefined {
  const norm = (s: string): string => s.toLowerCase().replace(/^ck[amko]_/, '').replace(/[_\-\s]/g, '');
  const g = norm(given);
  if (g.length >= 3) {
    const prefixed = known.find((candidate) => norm(candidate).startsWith(g));
    if (prefixed !== undefined) return prefixed;
  }
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = levenshtein(g, norm(candidate));
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const limit = g.length <= 3 ? 1 : Math.max(2, Math.floor(g.length / 3));
  return bestDistance <= limit ? best : undefined;
}

function unknownKeyError(what: string, key: unknown): InvalidArgumentError {
  const suggestion = typeof key === 'string' ? closest(key, FIELDS.map((f) => f.name)) : undefined;
  return new InvalidArgumentError(
    `unknown ${what} ${quote(key)}${suggestion ? `; did you mean ${quote(suggestion)}?` : ''}`,
  );
}

/** `received <type>`, with `<redacted>` for fields that may hold key material. */
function received(value: unknown, secret: boolean): string {
  return `received ${describeType(value)}${secret ? ' <redacted>' : ''}`;
}

function curveOf(ecParams: Uint8Array): CurveName | undefined {
  const hex = Buffer.from(ecParams.buffer, ecParams.byteOffset, ecParams.byteLength).toString('hex');
  for (const [name, der] of CURVES) if (der === hex) return name;
  return undefined;
}

/** Minimal big-endian encoding of a positive integer (65537 -> 01 00 01). */
function bigEndian(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest > 0) {
    bytes.unshift(rest % 256);
    rest = Math.floor(rest / 256);
  }
  return Buffer.from(bytes.length > 0 ? bytes : [0]);
}

// ---------------------------------------------------------------------------------------
// toRawTemplate
// ---------------------------------------------------------------------------------------

/**
 * Converts a template, friendly or raw, to the raw form pkcs11js takes.
 *
 * - Raw arrays: each entry must be an object with a `type` that is an integer in
 *   0..0xffffffff and an optional value (number in 0..0xffffffff, boolean, string, Buffer or
 *   Uint8Array); a type may appear only once. Order is kept.
 * - Friendly objects: unknown keys and wrongly typed values are rejected. Output order is
 *   class, key type, then the other attributes in {@link FriendlyTemplate} declaration order.
 *
 * The result holds fresh objects and unpooled Buffer copies; the input is not retained.
 * @throws InvalidArgumentError naming the offending key or index; never echoes value bytes
 */
export function toRawTemplate(input: TemplateInput): Pkcs11Attribute[] {
  if (Array.isArray(input)) return rawToRaw(input as RawTemplate);
  if (!isPlainObject(input)) {
    throw new InvalidArgumentError(
      `template must be an object of named attributes or an array of { type, value }, received ${describeType(input)}`,
    );
  }
  return friendlyToRaw(input as FriendlyTemplate);
}

function rawToRaw(input: RawTemplate): Pkcs11Attribute[] {
  const seen = new Set<number>();
  return input.map((entry, index): Pkcs11Attribute => {
    const at = `template[${index}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new InvalidArgumentError(`${at} must be an object { type, value }, ${received(entry, false)}`);
    }
    const { type, value } = entry as { type?: unknown; value?: unknown };
    if (!isUlong(type)) {
      throw new InvalidArgumentError(`${at}.type must be an integer CKA_* in 0..0xffffffff, ${received(type, false)}`);
    }
    const label = `${at} (${ATTRIBUTE_NAMES.get(type) ?? `CKA 0x${type.toString(16)}`})`;
    if (seen.has(type)) throw new InvalidArgumentError(`${label} appears more than once in the template`);
    seen.add(type);
    if (value === undefined) return { type };
    if (typeof value === 'boolean' || typeof value === 'string' || isUlong(value)) return { type, value };
    if (isBytes(value)) return { type, value: ownBuffer(value) };
    throw new InvalidArgumentError(
      `${label}.value must be a number in 0..0xffffffff, boolean, string, Buffer or Uint8Array, ${received(value, true)}`,
    );
  });
}

function friendlyToRaw(input: FriendlyTemplate): Pkcs11Attribute[] {
  const record = input as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!FIELD_BY_NAME.has(key)) throw unknownKeyError('template attribute', key);
  }
  const out: Pkcs11Attribute[] = [];
  let ecParams: Buffer | undefined;
  for (const field of FIELDS) {
    const value = record[field.name];
    if (value === undefined) continue;
    if (field.kind === 'curve' || field.kind === 'ecParams') {
      const bytes = encodeField(field, value);
      if (ecParams === undefined) {
        ecParams = bytes as Buffer;
        out.push({ type: field.type, value: ecParams });
      } else if (!ecParams.equals(bytes as Buffer)) {
        throw new InvalidArgumentError('template.curve and template.ecParams name different curves; give only one');
      }
      continue;
    }
    out.push({ type: field.type, value: encodeField(field, value) });
  }
  return out;
}

function encodeField(field: FieldSpec, value: unknown): number | boolean | string | Buffer {
  const at = `template.${field.name}`;
  switch (field.kind) {
    case 'class':
    case 'keyType': {
      const table: ReadonlyMap<string, number> = field.kind === 'class' ? OBJECT_CLASSES : KEY_TYPES;
      if (isUlong(value)) return value;
      if (typeof value === 'string') {
        const n = table.get(value);
        if (n !== undefined) return n;
        const suggestion = closest(value, [...table.keys()]);
        throw new InvalidArgumentError(
          `${at}: unknown ${field.kind === 'class' ? 'object class' : 'key type'} ${quote(value)}` +
            (suggestion ? `; did you mean ${quote(suggestion)}?` : `; expected one of ${[...table.keys()].join(', ')} or a number`),
        );
      }
      throw new InvalidArgumentError(`${at} must be a name or a number in 0..0xffffffff, ${received(value, false)}`);
    }
    case 'string':
      if (typeof value === 'string') return value;
      throw new InvalidArgumentError(`${at} must be a string, ${received(value, false)}`);
    case 'id':
      if (typeof value === 'string') return ownBuffer(Buffer.from(value, 'utf8'));
      if (isBytes(value)) return ownBuffer(value);
      throw new InvalidArgumentError(`${at} must be a string, Buffer or Uint8Array, ${received(value, false)}`);
    case 'bool':
      if (typeof value === 'boolean') return value;
      throw new InvalidArgumentError(`${at} must be a boolean, ${received(value, false)}`);
    case 'ulong':
      if (isUlong(value)) return value;
      throw new InvalidArgumentError(`${at} must be an integer in 0..0xffffffff, ${received(value, false)}`);
    case 'secret':
      if (isBytes(value)) return ownBuffer(value);
      throw new InvalidArgumentError(`${at} must be a Buffer or Uint8Array, ${received(value, true)}`);
    case 'bytes':
    case 'ecParams':
      if (isBytes(value)) return ownBuffer(value);
      throw new InvalidArgumentError(`${at} must be a Buffer or Uint8Array, ${received(value, false)}`);
    case 'exponent':
      if (isBytes(value)) return ownBuffer(value);
      if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return ownBuffer(bigEndian(value));
      throw new InvalidArgumentError(`${at} must be a Buffer, Uint8Array or positive integer, ${received(value, false)}`);
    case 'curve': {
      const der = typeof value === 'string' ? CURVES.get(value as CurveName) : undefined;
      if (der !== undefined) return ownBuffer(Buffer.from(der, 'hex'));
      if (typeof value === 'string') {
        throw new InvalidArgumentError(`${at}: unknown curve ${quote(value)}; expected one of ${[...CURVES.keys()].join(', ')}`);
      }
      throw new InvalidArgumentError(`${at} must be a curve name, ${received(value, false)}`);
    }
    case 'mechanism': {
      if (isUlong(value)) return value;
      if (typeof value === 'string') {
        const n = SIMPLE_MECHANISMS.get(value as SimpleMechanismName) ?? PARAM_MECHANISMS.get(value as ParamMechanismName);
        if (n !== undefined) return n;
        throw new InvalidArgumentError(`${at}: unknown mechanism ${quote(value)}`);
      }
      throw new InvalidArgumentError(`${at} must be a CKM_* number or mechanism name, ${received(value, false)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------
// fromRawAttributes
// ---------------------------------------------------------------------------------------

function reverse<K>(table: ReadonlyMap<K, number>): ReadonlyMap<number, K> {
  const out = new Map<number, K>();
  for (const [k, v] of table) if (!out.has(v)) out.set(v, k);
  return out;
}
const CLASS_NAMES = reverse(OBJECT_CLASSES);
const KEY_TYPE_NAMES = reverse(KEY_TYPES);

function decodeUlong(name: string, value: Buffer): number {
  const le = os.endianness() === 'LE';
  if (value.length === 8) {
    return Number(le ? value.readBigUInt64LE(0) : value.readBigUInt64BE(0));
  }
  if (value.length === 4) return le ? value.readUInt32LE(0) : value.readUInt32BE(0);
  throw new InvalidArgumentError(`${name}: expected a CK_ULONG of 4 or 8 bytes, received ${value.length} bytes`);
}

/**
 * Decodes attributes read with C_GetAttributeValue into friendly form: CK_BBOOL (1 byte) to
 * boolean, CK_ULONG (4 or 8 bytes, platform byte order) to number, label and application as
 * UTF-8, other values as Buffer copies. Class and key type become names when known; a known
 * named-curve CKA_EC_PARAMS also sets `curve`. Attribute types with no friendly name are
 * skipped (see {@link ATTRIBUTE_NAMES}). A 64-bit CK_ULONG above 2^53 (such as
 * CK_UNAVAILABLE_INFORMATION) is returned as the nearest JavaScript number.
 * @throws InvalidArgumentError for an entry that is not `{ type: number, value: Buffer }` or
 *   a boolean or CK_ULONG of the wrong length
 */
export function fromRawAttributes(attrs: readonly { type: number; value: Buffer }[]): FriendlyAttributes {
  if (!Array.isArray(attrs)) {
    throw new InvalidArgumentError(`attributes must be an array, received ${describeType(attrs)}`);
  }
  const out: Record<string, unknown> = {};
  attrs.forEach((entry: unknown, index) => {
    const { type, value } = (typeof entry === 'object' && entry !== null ? entry : {}) as { type?: unknown; value?: unknown };
    if (!isUlong(type) || !isBytes(value)) {
      throw new InvalidArgumentError(`attributes[${index}] must be { type: number, value: Buffer }`);
    }
    const field = FIELD_BY_TYPE.get(type);
    if (!field) return;
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const name = `attributes[${index}] (${field.name})`;
    switch (field.kind) {
      case 'bool':
        if (bytes.length !== 1) {
          throw new InvalidArgumentError(`${name}: expected a 1-byte CK_BBOOL, received ${bytes.length} bytes`);
        }
        out[field.name] = bytes[0] !== 0;
        break;
      case 'ulong':
      case 'mechanism':
        out[field.name] = decodeUlong(name, bytes);
        break;
      case 'class': {
        const n = decodeUlong(name, bytes);
        out[field.name] = CLASS_NAMES.get(n) ?? n;
        break;
      }
      case 'keyType': {
        const n = decodeUlong(name, bytes);
        out[field.name] = KEY_TYPE_NAMES.get(n) ?? n;
        break;
      }
      case 'string':
        out[field.name] = bytes.toString('utf8');
        break;
      case 'ecParams': {
        out[field.name] = ownBuffer(bytes);
        const curve = curveOf(bytes);
        if (curve) out.curve = curve;
        break;
      }
      default:
        out[field.name] = ownBuffer(bytes);
    }
  });
  return out as FriendlyAttributes;
}

// ---------------------------------------------------------------------------------------
// Mechanisms
// ---------------------------------------------------------------------------------------

/** Friendly mechanism names usable without parameters (PSS and OAEP get fixed defaults). */
export type SimpleMechanismName =
  | 'SHA256_HMAC'
  | 'SHA384_HMAC'
  | 'SHA512_HMAC'
  | 'ECDSA'
  | 'SHA256_RSA_PKCS'
  | 'SHA256_RSA_PKCS_PSS'
  | 'RSA_PKCS_OAEP'
  | 'SHA256'
  | 'SHA384'
  | 'SHA512'
  | 'AES_KEY_WRAP_PAD'
  | 'AES_KEY_GEN'
  | 'EC_KEY_PAIR_GEN'
  | 'RSA_PKCS_KEY_PAIR_GEN'
  | 'GENERIC_SECRET_KEY_GEN';

/** Friendly mechanism names that need parameters, given as a {@link FriendlyMechanism} object. */
export type ParamMechanismName = 'AES_GCM' | 'AES_CBC_PAD';

/** Every friendly mechanism name. */
export type MechanismName = SimpleMechanismName | ParamMechanismName;

/** A friendly mechanism with its parameters. */
export type FriendlyMechanism =
  | {
      /** CKM_AES_GCM. */
      name: 'AES_GCM';
      /** The IV (nonce), usually 12 bytes. Must be unique per key. */
      iv: Buffer | Uint8Array;
      /** Additional authenticated data. */
      aad?: Buffer | Uint8Array;
      /** Tag length in bits, a multiple of 8 in 32..128; default 128. */
      tagBits?: number;
    }
  | {
      /** CKM_AES_CBC_PAD (PKCS#7 padding). */
      name: 'AES_CBC_PAD';
      /** The 16-byte IV. */
      iv: Buffer | Uint8Array;
    }
  | {
      /** A mechanism that needs no caller-given parameters. */
      name: SimpleMechanismName;
    };

/**
 * A `{ mechanism, parameter }` object as pkcs11js takes it, typed loosely enough to write a
 * CK_PARAMS_* object literal inline; byte fields may be Uint8Array.
 */
export type RawMechanism = {
  /** CKM_* number. */
  mechanism: number;
  /** A byte string, a CK_ULONG, or a CK_PARAMS_* object (`type` is the CK_PARAMS_* number). */
  parameter?:
    | Buffer
    | Uint8Array
    | number
    | { type: number; [field: string]: number | boolean | string | Buffer | Uint8Array | undefined };
};

/**
 * A mechanism in any accepted form: a CKM_* number, a parameterless friendly name, a
 * {@link FriendlyMechanism} object, or a `{ mechanism, parameter }` object
 * (pkcs11js `Mechanism` or {@link RawMechanism}).
 */
export type MechanismInput = number | SimpleMechanismName | FriendlyMechanism | Mechanism | RawMechanism;

const SIMPLE_MECHANISMS: ReadonlyMap<SimpleMechanismName, number> = new Map<SimpleMechanismName, number>([
  ['SHA256_HMAC', pkcs11js.CKM_SHA256_HMAC],
  ['SHA384_HMAC', pkcs11js.CKM_SHA384_HMAC],
  ['SHA512_HMAC', pkcs11js.CKM_SHA512_HMAC],
  ['ECDSA', pkcs11js.CKM_ECDSA],
  ['SHA256_RSA_PKCS', pkcs11js.CKM_SHA256_RSA_PKCS],
  ['SHA256_RSA_PKCS_PSS', pkcs11js.CKM_SHA256_RSA_PKCS_PSS],
  ['RSA_PKCS_OAEP', pkcs11js.CKM_RSA_PKCS_OAEP],
  ['SHA256', pkcs11js.CKM_SHA256],
  ['SHA384', pkcs11js.CKM_SHA384],
  ['SHA512', pkcs11js.CKM_SHA512],
  ['AES_KEY_WRAP_PAD', pkcs11js.CKM_AES_KEY_WRAP_PAD],
  ['AES_KEY_GEN', pkcs11js.CKM_AES_KEY_GEN],
  ['EC_KEY_PAIR_GEN', pkcs11js.CKM_EC_KEY_PAIR_GEN],
  ['RSA_PKCS_KEY_PAIR_GEN', pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN],
  ['GENERIC_SECRET_KEY_GEN', pkcs11js.CKM_GENERIC_SECRET_KEY_GEN],
]);

const PARAM_MECHANISMS: ReadonlyMap<ParamMechanismName, number> = new Map<ParamMechanismName, number>([
  ['AES_GCM', pkcs11js.CKM_AES_GCM],
  ['AES_CBC_PAD', pkcs11js.CKM_AES_CBC_PAD],
]);

const ALL_MECHANISM_NAMES: readonly string[] = [...SIMPLE_MECHANISMS.keys(), ...PARAM_MECHANISMS.keys()];

function simpleMechanism(name: SimpleMechanismName, mechanism: number): Mechanism {
  switch (name) {
    case 'SHA256_RSA_PKCS_PSS':
    {
      const parameter: RsaPSS = { type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg: pkcs11js.CKM_SHA256, mgf: pkcs11js.CKG_MGF1_SHA256, saltLen: 32 };
      return { mechanism, parameter };
    }
    case 'RSA_PKCS_OAEP':
    {
      const parameter: RsaOAEP = { type: pkcs11js.CK_PARAMS_RSA_OAEP, hashAlg: pkcs11js.CKM_SHA_1, mgf: pkcs11js.CKG_MGF1_SHA1, source: CKZ_DATA_SPECIFIED };
      return { mechanism, parameter };
    }
    default:
      return { mechanism };
  }
}

function unknownMechanism(name: string): InvalidArgumentError {
  const suggestion = closest(name, ALL_MECHANISM_NAMES);
  return new InvalidArgumentError(
    `unknown mechanism ${quote(name)}` +
      (suggestion ? `; did you mean ${quote(suggestion)}?` : `; expected one of ${ALL_MECHANISM_NAMES.join(', ')}, a CKM_* number or { mechanism, parameter }`),
  );
}

function checkKeys(obj: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      throw new InvalidArgumentError(`${what}: unknown property ${quote(key)}; allowed: ${allowed.join(', ')}`);
    }
  }
}

function friendlyMechanism(input: Record<string, unknown>): Mechanism {
  const name = input.name;
  if (typeof name !== 'string') {
    throw new InvalidArgumentError(`mechanism.name must be a string, received ${describeType(name)}`);
  }
  const simple = SIMPLE_MECHANISMS.get(name as SimpleMechanismName);
  if (simple !== undefined) {
    checkKeys(input, ['name'], `mechanism ${name}`);
    return simpleMechanism(name as SimpleMechanismName, simple);
  }
  if (name === 'AES_GCM') {
    checkKeys(input, ['name', 'iv', 'aad', 'tagBits'], 'mechanism AES_GCM');
    const { iv, aad, tagBits = 128 } = input;
    if (!isBytes(iv) || iv.length === 0) {
      throw new InvalidArgumentError(`mechanism AES_GCM: iv must be a non-empty Buffer or Uint8Array, received ${describeType(iv)}`);
    }
    if (aad !== undefined && !isBytes(aad)) {
      throw new InvalidArgumentError(`mechanism AES_GCM: aad must be a Buffer or Uint8Array, received ${describeType(aad)}`);
    }
    if (typeof tagBits !== 'number' || !Number.isInteger(tagBits) || tagBits < 32 || tagBits > 128 || tagBits % 8 !== 0) {
      throw new InvalidArgumentError(
        `mechanism AES_GCM: tagBits must be a multiple of 8 in 32..128, received ${typeof tagBits === 'number' ? tagBits : describeType(tagBits)}`,
      );
    }
    const ivBuffer = ownBuffer(iv);
    const parameter: GcmParams = {
      type: pkcs11js.CK_PARAMS_GCM,
      iv: ivBuffer,
      ivBits: ivBuffer.length * 8,
      tagBits,
    };
    if (aad !== undefined) parameter.aad = ownBuffer(aad);
    return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
  }
  if (name === 'AES_CBC_PAD') {
    checkKeys(input, ['name', 'iv'], 'mechanism AES_CBC_PAD');
    const { iv } = input;
    if (!isBytes(iv) || iv.length !== 16) {
      throw new InvalidArgumentError(
        `mechanism AES_CBC_PAD: iv must be a 16-byte Buffer or Uint8Array, received ${describeType(iv)}${isBytes(iv) ? ` of ${iv.length} bytes` : ''}`,
      );
    }
    return { mechanism: pkcs11js.CKM_AES_CBC_PAD, parameter: ownBuffer(iv) };
  }
  throw unknownMechanism(name);
}

/** Fields pkcs11js requires in each CK_PARAMS_* object (from its params.cpp). */
const REQUIRED_PARAM_FIELDS: ReadonlyMap<number, readonly (readonly [string, 'bytes' | 'ulong'])[]> = new Map<number, readonly (readonly [string, 'bytes' | 'ulong'])[]>([
  [pkcs11js.CK_PARAMS_GCM, [['iv', 'bytes']]],
  [pkcs11js.CK_PARAMS_AES_GCM, [['iv', 'bytes']]],
  [pkcs11js.CK_PARAMS_AES_GCM_v240, [['iv', 'bytes'], ['ivBits', 'ulong']]],
  [pkcs11js.CK_PARAMS_AES_CBC, [['iv', 'bytes']]],
  [pkcs11js.CK_PARAMS_AES_CCM, [['dataLength', 'ulong']]],
  [pkcs11js.CK_PARAMS_RSA_OAEP, [['hashAlg', 'ulong'], ['mgf', 'ulong'], ['source', 'ulong']]],
  [pkcs11js.CK_PARAMS_RSA_PSS, [['hashAlg', 'ulong'], ['mgf', 'ulong'], ['saltLen', 'ulong']]],
  [pkcs11js.CK_PARAMS_EC_DH, [['kdf', 'ulong'], ['publicData', 'bytes']]],
]);

function rawMechanism(input: Record<string, unknown>): Mechanism {
  checkKeys(input, ['mechanism', 'parameter'], 'mechanism');
  const { mechanism, parameter } = input;
  if (!isUlong(mechanism)) {
    throw new InvalidArgumentError(
      `mechanism.mechanism must be a CKM_* number in 0..0xffffffff, received ${typeof mechanism === 'number' ? String(mechanism) : describeType(mechanism)}`,
    );
  }
  const hex = `CKM 0x${mechanism.toString(16)}`;
  if (parameter === undefined || parameter === null) return { mechanism };
  if (isUlong(parameter)) return { mechanism, parameter };
  if (isBytes(parameter)) return { mechanism, parameter: ownBuffer(parameter) };
  if (!isPlainObject(parameter)) {
    throw new InvalidArgumentError(
      `${hex}: parameter must be a Buffer, Uint8Array, number or plain CK_PARAMS_* object, received ${describeType(parameter)}`,
    );
  }
  if (!isUlong(parameter.type)) {
    throw new InvalidArgumentError(`${hex}: parameter.type must be a CK_PARAMS_* number, received ${describeType(parameter.type)}`);
  }
  // pkcs11js does not survive a parameter object missing a field it requires (the
  // process crashes): check the required fields of the parameter types it knows.
  for (const [field, kind] of REQUIRED_PARAM_FIELDS.get(parameter.type) ?? []) {
    const v = parameter[field];
    if (kind === 'bytes' ? !isBytes(v) : !isUlong(v)) {
      throw new InvalidArgumentError(`${hex}: parameter.${field} is required and must be ${kind === 'bytes' ? 'a Buffer or Uint8Array' : 'a number in 0..0xffffffff'}, received ${describeType(v)}`);
    }
  }
  const out: Record<string, number | boolean | string | Buffer> = {};
  for (const [key, value] of Object.entries(parameter)) {
    if (value === undefined) continue;
    if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') out[key] = value;
    else if (isBytes(value)) out[key] = ownBuffer(value);
    else {
      throw new InvalidArgumentError(
        `${hex}: parameter.${key} must be a number, boolean, string, Buffer or Uint8Array, received ${describeType(value)}`,
      );
    }
  }
  return { mechanism, parameter: out as { type: number } };
}

/**
 * Converts a mechanism in any accepted form to the pkcs11js form. Parameters are plain
 * objects of numbers and unpooled Buffers (Uint8Arrays are copied into Buffers), so the
 * result survives structured clone to a worker thread.
 *
 * Friendly forms: `'SHA256_HMAC'` etc. (see {@link SimpleMechanismName});
 * `'SHA256_RSA_PKCS_PSS'` gets SHA-256 / MGF1-SHA256 / salt 32; `'RSA_PKCS_OAEP'` gets
 * SHA-1 / MGF1-SHA1 / source CKZ_DATA_SPECIFIED with no label;
 * `{ name: 'AES_GCM', iv, aad?, tagBits? = 128 }` gives CK_GCM_PARAMS (CK_PARAMS_GCM) with
 * `ivBits = iv.length * 8`; `{ name: 'AES_CBC_PAD', iv }` gives the 16-byte IV as parameter.
 * @throws InvalidArgumentError echoing the bad name or number, never parameter bytes
 */
export function toMechanism(input: MechanismInput): Mechanism {
  if (typeof input === 'number') {
    if (isUlong(input)) return { mechanism: input };
    throw new InvalidArgumentError(`mechanism must be a CKM_* number in 0..0xffffffff, received ${String(input)}`);
  }
  if (typeof input === 'string') {
    const simple = SIMPLE_MECHANISMS.get(input as SimpleMechanismName);
    if (simple !== undefined) return simpleMechanism(input as SimpleMechanismName, simple);
    if (PARAM_MECHANISMS.has(input as ParamMechanismName)) {
      throw new InvalidArgumentError(`mechanism ${quote(input)} needs parameters: pass { name: ${quote(input)}, iv, ... }`);
    }
    throw unknownMechanism(input);
  }
  if (!isPlainObject(input)) {
    throw new InvalidArgumentError(
      `mechanism must be a number, a name, { name, ... } or { mechanism, parameter }, received ${describeType(input)}`,
    );
  }
  const hasName = 'name' in input;
  const hasMechanism = 'mechanism' in input;
  if (hasName && hasMechanism) {
    throw new InvalidArgumentError('mechanism object has both "name" and "mechanism"; give one');
  }
  if (hasName) return friendlyMechanism(input);
  if (hasMechanism) return rawMechanism(input);
  throw new InvalidArgumentError('mechanism object needs a "name" or a "mechanism" property');
}
