/**
 * Attribute templates: the friendly, typed form that callers of pkcs11-ha write, and its
 * conversion to and from the raw form that pkcs11js takes and returns, by the attribute
 * table (attribute-table.ts).
 *
 * Everything produced here is made of plain objects, numbers, booleans, strings and
 * Buffers, so it can be posted to a worker thread with structured clone. Every Buffer
 * produced is a fresh, exact-size, unpooled copy: posting a view of Node's shared 8 KiB
 * Buffer pool would clone the whole pool, including bytes that belong to other callers.
 *
 * Error messages never contain the bytes of attribute values: only attribute names, the
 * JavaScript type received and, for enumerations such as the object class, the name given.
 */
import os from 'node:os';
import { InvalidArgumentError } from '../errors/ha-error.js';
import { describeType, isBytes, isPlainObject, isUlong, ownBuffer, quote, ulongOrName } from './argument-checks.js';
import {
  ATTRIBUTE_FIELDS,
  ATTRIBUTE_NAMES,
  CURVES,
  KEY_TYPES,
  OBJECT_CLASSES,
  curveOf,
  fieldByName,
  fieldByType,
  unknownAttributeError,
  type AttributeField,
  type CurveName,
  type KeyTypeName,
  type ObjectClassName,
} from './attribute-table.js';
import { mechanismNumber, type MechanismName } from './mechanism-table.js';

/** One attribute as pkcs11js takes it, except that a value may also be a `Uint8Array`. */
export type RawAttribute = { type: number; value?: number | boolean | string | Buffer | Uint8Array };

/** A template in raw form: CKA_* numbers and values. */
export type RawTemplate = readonly RawAttribute[];

/**
 * One attribute after normalisation: Uint8Array values are converted to Buffer. Assignable
 * both to {@link RawAttribute} and to pkcs11js's `Attribute`.
 */
export type Pkcs11Attribute = { type: number; value?: number | boolean | string | Buffer };

/**
 * A template written with camelCase names. Every field is optional; `undefined` fields are
 * left out. Use {@link toRawTemplate} to convert it. Its keys are the names of the
 * attribute table (`AttributeName`).
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
  /** CKA_EC_PARAMS, by curve name; may be given with `ecParams` only if they agree. Read back when `ecParams` is a known curve. */
  curve?: CurveName;
  /** CKA_EC_POINT: DER-encoded EC public point. */
  ecPoint?: Buffer | Uint8Array;
  /** CKA_KEY_GEN_MECHANISM: the mechanism that generated the key, CKM_* number or name. */
  keyGenMechanism?: number | MechanismName;
  /** CKA_CHECK_VALUE: key check value. */
  checkValue?: Buffer | Uint8Array;
}

/**
 * Attributes read back from a token, decoded by {@link fromRawAttributes}: the keys of
 * {@link FriendlyTemplate}, byte values as Buffers, CKA_KEY_GEN_MECHANISM as a number,
 * class and key type as names when known (numbers otherwise). Assignable to
 * {@link FriendlyTemplate}.
 */
export type FriendlyAttributes = {
  // How a value written in a template reads back: bytes (whatever was written) as a
  // Buffer, a mechanism as its number, anything else as written.
  [K in keyof FriendlyTemplate]?: [Extract<FriendlyTemplate[K], Uint8Array>] extends [never]
    ? [Extract<FriendlyTemplate[K], MechanismName>] extends [never]
      ? Exclude<FriendlyTemplate[K], undefined>
      : number
    : Buffer;
};

/** A template in either form. */
export type TemplateInput = FriendlyTemplate | RawTemplate;

/** `received <type>`, with `<redacted>` for fields that may hold key material. */
function received(value: unknown, secret: boolean): string {
  return `received ${describeType(value)}${secret ? ' <redacted>' : ''}`;
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
 * @example toRawTemplate({ class: 'secretKey', keyType: 'aes', valueLen: 32, token: false })
 * @throws {@link InvalidArgumentError} naming the offending key or index; never echoes value bytes
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
  // Array.from, not map: a hole in a sparse array is an entry too (undefined, refused), never skipped.
  return Array.from(input, (entry, index): Pkcs11Attribute => {
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
    if (!fieldByName(key)) throw unknownAttributeError('template attribute', key);
  }
  const out: Pkcs11Attribute[] = [];
  let ecParams: Buffer | undefined;
  for (const field of ATTRIBUTE_FIELDS) {
    const value = record[field.name];
    if (value === undefined) continue;
    if (field.kind === 'curve' || field.kind === 'ecParams') {
      const bytes = encodeField(field, value) as Buffer;
      if (ecParams === undefined) {
        ecParams = bytes;
        out.push({ type: field.type, value: ecParams });
      } else if (!ecParams.equals(bytes)) {
        throw new InvalidArgumentError('template.curve and template.ecParams name different curves; give only one');
      }
      continue;
    }
    out.push({ type: field.type, value: encodeField(field, value) });
  }
  return out;
}

function encodeField(field: AttributeField, value: unknown): number | boolean | string | Buffer {
  const at = `template.${field.name}`;
  switch (field.kind) {
    case 'class':
    case 'keyType': {
      const table: ReadonlyMap<string, number> = field.kind === 'class' ? OBJECT_CLASSES : KEY_TYPES;
      const n = ulongOrName(value, table, (name, suggestion) =>
        new InvalidArgumentError(
          `${at}: unknown ${field.kind === 'class' ? 'object class' : 'key type'} ${quote(name)}` +
            (suggestion ? `; did you mean ${quote(suggestion)}?` : `; expected one of ${[...table.keys()].join(', ')} or a number`),
        ),
      );
      if (n !== undefined) return n;
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
        const n = mechanismNumber(value);
        if (n !== undefined) return n;
        throw new InvalidArgumentError(`${at}: unknown mechanism ${quote(value)}`);
      }
      throw new InvalidArgumentError(`${at} must be a CKM_* number or mechanism name, ${received(value, false)}`);
    }
  }
}

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
 * skipped (see `ATTRIBUTE_NAMES`). A 64-bit CK_ULONG above 2^53 (such as
 * CK_UNAVAILABLE_INFORMATION) is returned as the nearest JavaScript number.
 * @throws {@link InvalidArgumentError} for an entry that is not `{ type: number, value: Buffer }`
 *   or a boolean or CK_ULONG of the wrong length
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
    const field = fieldByType(type);
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
