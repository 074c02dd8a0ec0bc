/**
 * Mechanism parameters: the shapes a mechanism's parameter can take, and the checks that
 * turn a friendly parameter (`{ name: 'AES_GCM', iv }`) or a raw one (a Buffer, a number or
 * a CK_PARAMS_* object) into the form pkcs11js takes. Which mechanism takes which shape is
 * the mechanism table's business (mechanism-table.ts).
 *
 * Messages echo the names and numbers the caller gave, and for byte strings only their
 * type and length, never their bytes.
 */
import os from 'node:os';
import type { ECDH1, GcmParams, Mechanism, RsaOAEP, RsaPSS } from 'pkcs11js';
import { InvalidArgumentError } from '../errors/ha-error.js';
import { describeType, isBytes, isPlainObject, isUlong, ownBuffer, quote, ulongOrName } from './argument-checks.js';
import { constantsWithPrefix, pkcs11js, type ConstantName } from '../native/pkcs11js.js';

/** pkcs11js has no CKZ_DATA_SPECIFIED (value from pkcs11t.h). */
const CKZ_DATA_SPECIFIED = 0x1;

/** sizeof(CK_ULONG): 8 on 64-bit Unix (LP64), 4 on Windows and 32-bit platforms. */
const ULONG_SIZE = process.platform !== 'win32' && /64|s390x/.test(process.arch) ? 8 : 4;

/** A digest for `hashAlg`, by its CKM_ name without the prefix. */
export type HashName = 'SHA_1' | 'SHA224' | 'SHA256' | 'SHA384' | 'SHA512';

/** Digests that OAEP and PSS can name, with their MGF1 and output length (the default salt). */
const HASHES = {
  SHA_1: { mechanism: pkcs11js.CKM_SHA_1, mgf: pkcs11js.CKG_MGF1_SHA1, bytes: 20 },
  SHA224: { mechanism: pkcs11js.CKM_SHA224, mgf: pkcs11js.CKG_MGF1_SHA224, bytes: 28 },
  SHA256: { mechanism: pkcs11js.CKM_SHA256, mgf: pkcs11js.CKG_MGF1_SHA256, bytes: 32 },
  SHA384: { mechanism: pkcs11js.CKM_SHA384, mgf: pkcs11js.CKG_MGF1_SHA384, bytes: 48 },
  SHA512: { mechanism: pkcs11js.CKM_SHA512, mgf: pkcs11js.CKG_MGF1_SHA512, bytes: 64 },
} as const satisfies Record<HashName, { readonly mechanism: number; readonly mgf: number; readonly bytes: number }>;

/** A mask generation function for `mgf`, by its CKG_ name without the prefix (e.g. `'MGF1_SHA256'`). */
export type MgfName = ConstantName<'CKG_'>;

/** A key derivation function for `kdf`, by its CKD_ name without the prefix (e.g. `'NULL'`, `'SHA256_KDF'`). */
export type KdfName = ConstantName<'CKD_'>;

type HashInfo = (typeof HASHES)[HashName];
const HASH_BY_NAME: ReadonlyMap<string, HashInfo> = new Map(Object.entries(HASHES));
const HASH_BY_NUMBER: ReadonlyMap<number, HashInfo> = new Map(Object.values(HASHES).map((h) => [h.mechanism, h]));
const MGFS: ReadonlyMap<string, number> = constantsWithPrefix('CKG_');
const KDFS: ReadonlyMap<string, number> = constantsWithPrefix('CKD_');

/**
 * The shape of a mechanism's parameter. `iv`: exactly `bytes` bytes; `optionalIv`: likewise
 * or none; `gcm`, `ccm`: CK_GCM_PARAMS, CK_CCM_PARAMS; `ctr`: CK_AES_CTR_PARAMS (counter
 * bits and a 16-byte counter block); `oaep`, `pss`: CK_RSA_PKCS_OAEP_PARAMS,
 * CK_RSA_PKCS_PSS_PARAMS (`hash` is the digest a hashed PSS mechanism fixes); `ecdh`:
 * CK_ECDH1_DERIVE_PARAMS; `macLength`: CK_MAC_GENERAL_PARAMS; `raw`, `optionalRaw`: a
 * parameter with no friendly form, given as `parameter` and checked as in the raw form.
 */
export type ParameterShape =
  | { readonly kind: 'iv'; readonly bytes: number }
  | { readonly kind: 'optionalIv'; readonly bytes: number }
  | { readonly kind: 'gcm' | 'ccm' | 'ctr' | 'oaep' | 'ecdh' | 'macLength' | 'raw' | 'optionalRaw' }
  | { readonly kind: 'pss'; readonly hash?: HashName };

/** A raw parameter: a byte string, a CK_ULONG, or a CK_PARAMS_* object (`type` is the CK_PARAMS_* number). */
export type RawParameter =
  | Buffer
  | Uint8Array
  | number
  | { type: number; [field: string]: number | boolean | string | Buffer | Uint8Array | undefined };

/** The friendly fields of each shape; a trailing `?` marks an optional one. */
function fieldsOf(shape: ParameterShape): readonly string[] {
  switch (shape.kind) {
    case 'iv': return ['iv'];
    case 'optionalIv': return ['iv?'];
    case 'gcm': return ['iv', 'aad?', 'tagBits?'];
    case 'ccm': return ['dataLength', 'nonce', 'aad?', 'macLength'];
    case 'ctr': return ['counterBits', 'counterBlock'];
    case 'oaep': return ['hashAlg?', 'mgf?', 'source?', 'sourceData?'];
    case 'pss': return [shape.hash ? 'hashAlg?' : 'hashAlg', 'mgf?', 'saltLen?'];
    case 'ecdh': return ['kdf?', 'publicData', 'sharedData?'];
    case 'macLength': return ['macLength'];
    case 'raw': return ['parameter'];
    case 'optionalRaw': return ['parameter?'];
  }
}

/** True if a mechanism of this shape cannot be given by its name alone. */
export function needsParameters(shape: ParameterShape): boolean {
  return fieldsOf(shape).some((f) => !f.endsWith('?'));
}

/** How to write a mechanism of this shape, for messages: `{ name: "AES_GCM", iv, aad?, tagBits? }`. */
export function usage(name: string, shape: ParameterShape): string {
  return `{ name: ${quote(name)}, ${fieldsOf(shape).join(', ')} }`;
}

/** `received <number>`, or the type (with the length of a byte string); never bytes or text. */
function received(value: unknown): string {
  if (typeof value === 'number') return `received ${String(value)}`;
  return `received ${describeType(value)}${isBytes(value) ? ` of ${value.length} bytes` : ''}`;
}

function bytes(what: string, field: string, value: unknown, size?: { exactly?: number; min?: number; max?: number }): Buffer {
  const { exactly, min = 1, max = Infinity } = size ?? {};
  const ok = isBytes(value) && (exactly === undefined ? value.length >= min && value.length <= max : value.length === exactly);
  if (ok) return ownBuffer(value);
  const want =
    exactly !== undefined ? `a ${exactly}-byte` : max !== Infinity ? `a ${min}- to ${max}-byte` : min > 0 ? 'a non-empty' : 'a';
  throw new InvalidArgumentError(`${what}: ${field} must be ${want} Buffer or Uint8Array, ${received(value)}`);
}

function optionalBytes(what: string, field: string, value: unknown): Buffer | undefined {
  return value === undefined ? undefined : bytes(what, field, value, { min: 0 });
}

function ulong(what: string, field: string, value: unknown, check: (n: number) => boolean = () => true, rule = 'an integer in 0..0xffffffff'): number {
  if (isUlong(value) && check(value)) return value;
  throw new InvalidArgumentError(`${what}: ${field} must be ${rule}, ${received(value)}`);
}

/** A CK_ULONG given by number or by name from `table`. */
function named(what: string, field: string, value: unknown, table: ReadonlyMap<string, number>, prefix: string): number {
  const n = ulongOrName(value, table, (name, suggestion) =>
    new InvalidArgumentError(
      `${what}: ${field} ${quote(name)} is unknown; ` +
        (suggestion ? `did you mean ${quote(suggestion)}?` : `expected one of ${[...table.keys()].join(', ')} or a ${prefix}* number`),
    ),
  );
  if (n !== undefined) return n;
  throw new InvalidArgumentError(`${what}: ${field} must be a name or a ${prefix}* number in 0..0xffffffff, ${received(value)}`);
}

const HASH_NUMBERS: ReadonlyMap<string, number> = new Map([...HASH_BY_NAME].map(([k, h]) => [k, h.mechanism]));

/** hashAlg, mgf and the default salt length shared by OAEP and PSS. */
function hashAndMgf(what: string, input: Record<string, unknown>, fixed: HashInfo | undefined, fixedName: string | undefined) {
  const hashAlg = input.hashAlg === undefined ? fixed?.mechanism : named(what, 'hashAlg', input.hashAlg, HASH_NUMBERS, 'CKM_');
  if (hashAlg === undefined) throw new InvalidArgumentError(`${what}: hashAlg is required, received undefined`);
  if (fixed && hashAlg !== fixed.mechanism) {
    const given = typeof input.hashAlg === 'string' ? quote(input.hashAlg) : String(input.hashAlg);
    throw new InvalidArgumentError(`${what}: hashAlg must be ${fixedName ?? ''} for this mechanism, received ${given}`);
  }
  const hash = HASH_BY_NUMBER.get(hashAlg);
  const mgf = input.mgf === undefined ? hash?.mgf : named(what, 'mgf', input.mgf, MGFS, 'CKG_');
  if (mgf === undefined) {
    throw new InvalidArgumentError(`${what}: mgf is required when hashAlg is not one of ${[...HASH_BY_NAME.keys()].join(', ')}, received undefined`);
  }
  return { hashAlg, mgf, hash };
}

/**
 * Builds the pkcs11js mechanism `mechanism` (named `name`) from the friendly fields of `input`
 * according to `shape`. Unknown fields are refused.
 * @throws {@link InvalidArgumentError} naming the mechanism and the field, echoing the bad value
 */
export function withParameter(mechanism: number, name: string, shape: ParameterShape, input: Record<string, unknown>): Mechanism {
  const what = `mechanism ${name}`;
  const allowed = fieldsOf(shape).map((f) => f.replace(/\?$/, ''));
  for (const key of Object.keys(input)) {
    if (key !== 'name' && !allowed.includes(key)) {
      throw new InvalidArgumentError(`${what}: unknown property ${quote(key)}; allowed: name, ${allowed.join(', ')}`);
    }
  }
  switch (shape.kind) {
    case 'iv':
      return { mechanism, parameter: bytes(what, 'iv', input.iv, { exactly: shape.bytes }) };
    case 'optionalIv':
      return input.iv === undefined ? { mechanism } : { mechanism, parameter: bytes(what, 'iv', input.iv, { exactly: shape.bytes }) };
    case 'gcm': {
      const iv = bytes(what, 'iv', input.iv);
      const tagBits = input.tagBits ?? 128;
      ulong(what, 'tagBits', tagBits, (n) => n >= 32 && n <= 128 && n % 8 === 0, 'a multiple of 8 in 32..128');
      const aad = optionalBytes(what, 'aad', input.aad);
      const parameter: GcmParams = { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: iv.length * 8, tagBits: tagBits as number };
      if (aad !== undefined) parameter.aad = aad;
      return { mechanism, parameter };
    }
    case 'ccm': {
      // pkcs11js reads dataLength and macLength (its typings say dataLen and macLen).
      const dataLength = ulong(what, 'dataLength', input.dataLength);
      const nonce = bytes(what, 'nonce', input.nonce, { min: 7, max: 13 });
      const macLength = ulong(what, 'macLength', input.macLength, (n) => n >= 4 && n <= 16 && n % 2 === 0, 'an even number in 4..16');
      const aad = optionalBytes(what, 'aad', input.aad);
      const parameter = { type: pkcs11js.CK_PARAMS_CCM, dataLength, nonce, macLength, ...(aad === undefined ? {} : { aad }) };
      return { mechanism, parameter };
    }
    case 'ctr': {
      // CK_AES_CTR_PARAMS goes as the raw struct: a native CK_ULONG, then the 16-byte block.
      const counterBits = ulong(what, 'counterBits', input.counterBits, (n) => n >= 1 && n <= 128, 'an integer in 1..128');
      const block = bytes(what, 'counterBlock', input.counterBlock, { exactly: 16 });
      const parameter = Buffer.alloc(ULONG_SIZE + 16);
      const le = os.endianness() === 'LE';
      if (ULONG_SIZE === 8 && le) parameter.writeBigUInt64LE(BigInt(counterBits));
      else if (ULONG_SIZE === 8) parameter.writeBigUInt64BE(BigInt(counterBits));
      else if (le) parameter.writeUInt32LE(counterBits);
      else parameter.writeUInt32BE(counterBits);
      parameter.set(block, ULONG_SIZE);
      return { mechanism, parameter };
    }
    case 'oaep': {
      const { hashAlg, mgf } = hashAndMgf(what, { ...input, hashAlg: input.hashAlg ?? 'SHA_1' }, undefined, undefined);
      const source = ulong(what, 'source', input.source ?? CKZ_DATA_SPECIFIED);
      const sourceData = optionalBytes(what, 'sourceData', input.sourceData);
      const parameter: RsaOAEP = { type: pkcs11js.CK_PARAMS_RSA_OAEP, hashAlg, mgf, source };
      if (sourceData !== undefined) parameter.sourceData = sourceData;
      return { mechanism, parameter };
    }
    case 'pss': {
      const fixed = shape.hash === undefined ? undefined : HASHES[shape.hash];
      const { hashAlg, mgf, hash } = hashAndMgf(what, input, fixed, shape.hash);
      const saltLen = input.saltLen === undefined ? hash?.bytes : ulong(what, 'saltLen', input.saltLen);
      if (saltLen === undefined) {
        throw new InvalidArgumentError(`${what}: saltLen is required when hashAlg is not one of ${[...HASH_BY_NAME.keys()].join(', ')}, received undefined`);
      }
      const parameter: RsaPSS = { type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg, mgf, saltLen };
      return { mechanism, parameter };
    }
    case 'ecdh': {
      const kdf = input.kdf === undefined ? pkcs11js.CKD_NULL : named(what, 'kdf', input.kdf, KDFS, 'CKD_');
      const publicData = bytes(what, 'publicData', input.publicData);
      const sharedData = optionalBytes(what, 'sharedData', input.sharedData);
      if (kdf === pkcs11js.CKD_NULL && sharedData !== undefined) {
        throw new InvalidArgumentError(`${what}: sharedData must be left out when kdf is NULL (PKCS#11 requires it empty), received ${describeType(input.sharedData)}`);
      }
      const parameter: ECDH1 = { type: pkcs11js.CK_PARAMS_EC_DH, kdf, publicData };
      if (sharedData !== undefined) parameter.sharedData = sharedData;
      return { mechanism, parameter };
    }
    case 'macLength':
      return { mechanism, parameter: ulong(what, 'macLength', input.macLength, (n) => n >= 1, 'an integer in 1..0xffffffff') };
    case 'raw':
    case 'optionalRaw': {
      if (shape.kind === 'raw' && (input.parameter === undefined || input.parameter === null)) {
        throw new InvalidArgumentError(`${what}: parameter is required (a Buffer, a number or a CK_PARAMS_* object), received ${describeType(input.parameter)}`);
      }
      const parameter = toRawParameter(what, input.parameter);
      return parameter === undefined ? { mechanism } : { mechanism, parameter };
    }
  }
}

type FieldKind = 'bytes' | 'ulong' | 'handle';

/**
 * Fields pkcs11js requires in each CK_PARAMS_* object (its params.cpp), checked before the
 * call: a missing one makes pkcs11js throw a plain TypeError, or worse, mid-call.
 */
const REQUIRED_PARAM_FIELDS: ReadonlyMap<number, readonly (readonly [string, FieldKind])[]> = new Map<number, readonly (readonly [string, FieldKind])[]>([
  [pkcs11js.CK_PARAMS_AES_CBC, [['iv', 'bytes']]],
  [pkcs11js.CK_PARAMS_AES_CCM, [['dataLength', 'ulong']]],
  [pkcs11js.CK_PARAMS_AES_GCM, [['iv', 'bytes']]],
  [pkcs11js.CK_PARAMS_AES_GCM_v240, [['iv', 'bytes'], ['ivBits', 'ulong']]],
  [pkcs11js.CK_PARAMS_RSA_OAEP, [['hashAlg', 'ulong'], ['mgf', 'ulong'], ['source', 'ulong']]],
  [pkcs11js.CK_PARAMS_RSA_PSS, [['hashAlg', 'ulong'], ['mgf', 'ulong'], ['saltLen', 'ulong']]],
  [pkcs11js.CK_PARAMS_EC_DH, [['kdf', 'ulong'], ['publicData', 'bytes']]],
  [pkcs11js.CK_PARAMS_ECDH2_DERIVE, [['kdf', 'ulong'], ['publicData', 'bytes'], ['privateDataLen', 'ulong'], ['privateData', 'handle']]],
  [pkcs11js.CK_PARAMS_ECMQV_DERIVE, [['kdf', 'ulong'], ['publicData', 'bytes'], ['privateDataLen', 'ulong'], ['privateData', 'handle']]],
  [pkcs11js.CK_PARAMS_X9_42_DH1_DERIVE, [['kdf', 'ulong'], ['publicData', 'bytes']]],
  [pkcs11js.CK_PARAMS_X9_42_DH2_DERIVE, [['kdf', 'ulong'], ['publicData', 'bytes'], ['privateDataLen', 'ulong'], ['privateData', 'handle']]],
  [pkcs11js.CK_PARAMS_X9_42_MQV_DERIVE, [['kdf', 'ulong'], ['publicData', 'bytes'], ['privateDataLen', 'ulong'], ['privateData', 'handle'], ['publicKey', 'handle']]],
  [pkcs11js.CK_PARAMS_KEA_DERIVE, [['randomA', 'bytes'], ['randomB', 'bytes'], ['publicData', 'bytes']]],
  [pkcs11js.CK_PARAMS_RC2_CBC, [['effectiveBits', 'ulong'], ['iv', 'bytes']]],
  [pkcs11js.CK_PARAMS_RC2_MAC_GENERAL, [['effectiveBits', 'ulong'], ['macLength', 'ulong']]],
  [pkcs11js.CK_PARAMS_RC5, [['wordSize', 'ulong'], ['rounds', 'ulong']]],
  [pkcs11js.CK_PARAMS_RC5_CBC, [['wordSize', 'ulong'], ['rounds', 'ulong'], ['iv', 'bytes']]],
  [pkcs11js.CK_PARAMS_RC5_MAC_GENERAL, [['wordSize', 'ulong'], ['rounds', 'ulong'], ['macLength', 'ulong']]],
  [pkcs11js.CK_PARAMS_DES_CBC_ENCRYPT_DATA, [['iv', 'bytes']]],
  [
    pkcs11js.CK_PARAMS_SKIPJACK_PRIVATE_WRAP,
    [['password', 'bytes'], ['publicData', 'bytes'], ['primeP', 'bytes'], ['baseG', 'bytes'], ['subprimeQ', 'bytes'], ['randomA', 'bytes']],
  ],
  [
    pkcs11js.CK_PARAMS_SKIPJACK_RELAYX,
    [['oldWrappedX', 'bytes'], ['oldPassword', 'bytes'], ['oldPublicData', 'bytes'], ['oldRandomA', 'bytes'], ['newPassword', 'bytes'], ['newPublicData', 'bytes'], ['newRandomA', 'bytes']],
  ],
  [pkcs11js.CK_PARAMS_PBE, [['initVector', 'bytes'], ['password', 'bytes'], ['salt', 'bytes'], ['iteration', 'ulong']]],
  [pkcs11js.CK_PARAMS_GCM, [['iv', 'bytes'], ['ivBits', 'ulong']]],
  [pkcs11js.CK_PARAMS_CCM, [['dataLength', 'ulong']]],
  [pkcs11js.CK_PARAM_GOSTR3410_DERIVE, [['kdf', 'ulong'], ['publicData', 'bytes']]],
  [pkcs11js.CK_PARAM_GOSTR3410_KEY_WRAP, [['wrapOID', 'bytes'], ['key', 'handle']]],
]);

/**
 * The object handles inside a CK_PARAMS_* parameter, as the module will read them:
 * `privateData` of the ECDH2, ECMQV and X9.42 DH2/MQV derive parameters, `publicKey` of
 * X9.42 MQV, `key` of GOST R 34.10 key wrap. These are objects a command names besides its
 * own key fields. A field that is not a byte string is left out (pkcs11js refuses it before
 * the module sees anything).
 */
export function parameterHandles(parameter: unknown): Uint8Array[] {
  if (typeof parameter !== 'object' || parameter === null || isBytes(parameter)) return [];
  const fields = parameter as Record<string, unknown>;
  if (!isUlong(fields.type)) return [];
  const out: Uint8Array[] = [];
  for (const [field, kind] of REQUIRED_PARAM_FIELDS.get(fields.type) ?? []) {
    const value = fields[field];
    if (kind === 'handle' && isBytes(value)) out.push(value);
  }
  return out;
}

const FIELD_RULES: Readonly<Record<FieldKind, string>> = {
  bytes: 'a Buffer or Uint8Array',
  ulong: 'a number in 0..0xffffffff',
  handle: 'an object handle (Buffer)',
};

/**
 * Checks a raw parameter and copies it into plain numbers and unpooled Buffers:
 * undefined or null (none), a CK_ULONG, a byte string, or a plain CK_PARAMS_* object whose
 * required fields (for the types pkcs11js knows) are present.
 * @throws {@link InvalidArgumentError} prefixed with `what`
 */
export function toRawParameter(what: string, parameter: unknown): Mechanism['parameter'] {
  if (parameter === undefined || parameter === null) return undefined;
  if (isUlong(parameter)) return parameter;
  if (isBytes(parameter)) return ownBuffer(parameter);
  if (!isPlainObject(parameter)) {
    throw new InvalidArgumentError(`${what}: parameter must be a Buffer, Uint8Array, number or plain CK_PARAMS_* object, received ${describeType(parameter)}`);
  }
  if (!isUlong(parameter.type)) {
    throw new InvalidArgumentError(`${what}: parameter.type must be a CK_PARAMS_* number, received ${describeType(parameter.type)}`);
  }
  for (const [field, kind] of REQUIRED_PARAM_FIELDS.get(parameter.type) ?? []) {
    const v = parameter[field];
    if (kind === 'ulong' ? !isUlong(v) : !isBytes(v)) {
      throw new InvalidArgumentError(`${what}: parameter.${field} is required and must be ${FIELD_RULES[kind]}, received ${describeType(v)}`);
    }
  }
  const out: Record<string, number | boolean | string | Buffer> = {};
  for (const [key, value] of Object.entries(parameter)) {
    if (value === undefined) continue;
    if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') out[key] = value;
    else if (isBytes(value)) out[key] = ownBuffer(value);
    else {
      throw new InvalidArgumentError(`${what}: parameter.${key} must be a number, boolean, string, Buffer or Uint8Array, received ${describeType(value)}`);
    }
  }
  return out as { type: number };
}
