/**
 * The mechanism table: every CKM_* constant pkcs11js exports, by its name without the
 * prefix, and the shape of the parameter each one takes. {@link toMechanism} turns any
 * accepted form into the form pkcs11js takes.
 *
 * The names come from pkcs11js itself (at run time from its constants, at compile time from
 * its typings); only which mechanisms take a parameter, and of what shape, is written here,
 * from PKCS#11 v2.40. Every mechanism not listed in {@link PARAMETER_SHAPES} takes none.
 */
import type { Mechanism } from 'pkcs11js';
import { InvalidArgumentError } from '../errors/ha-error.js';
import { closest, describeType, isPlainObject, isUlong, quote } from './argument-checks.js';
import {
  needsParameters,
  toRawParameter,
  usage,
  withParameter,
  type HashName,
  type KdfName,
  type MgfName,
  type ParameterShape,
  type RawParameter,
} from './mechanism-parameters.js';
import { constantsWithPrefix, type ConstantName } from '../native/pkcs11js.js';

/** A mechanism by its CKM_ name without the prefix (`'AES_GCM'` for CKM_AES_GCM): every one pkcs11js exports. */
export type MechanismName = ConstantName<'CKM_'>;

const MECHANISMS: ReadonlyMap<string, number> = constantsWithPrefix('CKM_');

const IV8 = { kind: 'iv', bytes: 8 } as const;
const IV16 = { kind: 'iv', bytes: 16 } as const;
const IV24 = { kind: 'iv', bytes: 24 } as const;
const MAC = { kind: 'macLength' } as const;
const RAW = { kind: 'raw' } as const;
const OPTIONAL_RAW = { kind: 'optionalRaw' } as const;

/**
 * The mechanisms that take a parameter, by name, and the shape of their parameter (see
 * {@link ParameterShape}). Every mechanism not listed takes none. Read-only.
 */
export const PARAMETER_SHAPES = {
  // AES
  AES_CBC: IV16, AES_CBC_PAD: IV16, AES_CTS: IV16, AES_OFB: IV16, AES_CFB8: IV16, AES_CFB64: IV16, AES_CFB128: IV16,
  AES_CTR: { kind: 'ctr' },
  AES_GCM: { kind: 'gcm' },
  AES_CCM: { kind: 'ccm' },
  AES_KEY_WRAP: { kind: 'optionalIv', bytes: 8 },
  AES_KEY_WRAP_PAD: { kind: 'optionalIv', bytes: 8 },
  AES_MAC_GENERAL: MAC, AES_CMAC_GENERAL: MAC,
  AES_ECB_ENCRYPT_DATA: RAW, AES_CBC_ENCRYPT_DATA: RAW,
  // RSA
  RSA_PKCS_OAEP: { kind: 'oaep' },
  RSA_PKCS_PSS: { kind: 'pss' },
  SHA1_RSA_PKCS_PSS: { kind: 'pss', hash: 'SHA_1' },
  SHA224_RSA_PKCS_PSS: { kind: 'pss', hash: 'SHA224' },
  SHA256_RSA_PKCS_PSS: { kind: 'pss', hash: 'SHA256' },
  SHA384_RSA_PKCS_PSS: { kind: 'pss', hash: 'SHA384' },
  SHA512_RSA_PKCS_PSS: { kind: 'pss', hash: 'SHA512' },
  // Elliptic curves and Diffie-Hellman
  ECDH1_DERIVE: { kind: 'ecdh' }, ECDH1_COFACTOR_DERIVE: { kind: 'ecdh' }, ECMQV_DERIVE: RAW,
  DH_PKCS_DERIVE: RAW, X9_42_DH_DERIVE: RAW, X9_42_DH_HYBRID_DERIVE: RAW, X9_42_MQV_DERIVE: RAW, KEA_KEY_DERIVE: RAW,
  // MACs with a length (CK_MAC_GENERAL_PARAMS)
  MD2_HMAC_GENERAL: MAC, MD5_HMAC_GENERAL: MAC, SHA_1_HMAC_GENERAL: MAC, SHA224_HMAC_GENERAL: MAC,
  SHA256_HMAC_GENERAL: MAC, SHA384_HMAC_GENERAL: MAC, SHA512_HMAC_GENERAL: MAC,
  RIPEMD128_HMAC_GENERAL: MAC, RIPEMD160_HMAC_GENERAL: MAC, SSL3_MD5_MAC: MAC, SSL3_SHA1_MAC: MAC,
  // DES, CDMF, CAST, IDEA, Blowfish (8-byte blocks)
  DES_CBC: IV8, DES_CBC_PAD: IV8, DES_OFB64: IV8, DES_OFB8: IV8, DES_CFB64: IV8, DES_CFB8: IV8,
  DES3_CBC: IV8, DES3_CBC_PAD: IV8, CDMF_CBC: IV8, CDMF_CBC_PAD: IV8,
  DES_MAC_GENERAL: MAC, DES3_MAC_GENERAL: MAC, DES3_CMAC_GENERAL: MAC, CDMF_MAC_GENERAL: MAC,
  DES_ECB_ENCRYPT_DATA: RAW, DES_CBC_ENCRYPT_DATA: RAW, DES3_ECB_ENCRYPT_DATA: RAW, DES3_CBC_ENCRYPT_DATA: RAW,
  CAST_CBC: IV8, CAST_CBC_PAD: IV8, CAST3_CBC: IV8, CAST3_CBC_PAD: IV8,
  CAST5_CBC: IV8, CAST5_CBC_PAD: IV8, CAST128_CBC: IV8, CAST128_CBC_PAD: IV8,
  CAST_MAC_GENERAL: MAC, CAST3_MAC_GENERAL: MAC, CAST5_MAC_GENERAL: MAC, CAST128_MAC_GENERAL: MAC,
  IDEA_CBC: IV8, IDEA_CBC_PAD: IV8, IDEA_MAC_GENERAL: MAC,
  BLOWFISH_CBC: IV8, BLOWFISH_CBC_PAD: IV8,
  // Camellia, ARIA, SEED, Twofish (16-byte blocks)
  CAMELLIA_CBC: IV16, CAMELLIA_CBC_PAD: IV16, CAMELLIA_CTR: { kind: 'ctr' }, CAMELLIA_MAC_GENERAL: MAC,
  CAMELLIA_ECB_ENCRYPT_DATA: RAW, CAMELLIA_CBC_ENCRYPT_DATA: RAW,
  ARIA_CBC: IV16, ARIA_CBC_PAD: IV16, ARIA_MAC_GENERAL: MAC, ARIA_ECB_ENCRYPT_DATA: RAW, ARIA_CBC_ENCRYPT_DATA: RAW,
  SEED_CBC: IV16, SEED_CBC_PAD: IV16, SEED_MAC_GENERAL: MAC, SEED_ECB_ENCRYPT_DATA: RAW, SEED_CBC_ENCRYPT_DATA: RAW,
  TWOFISH_CBC: IV16, TWOFISH_CBC_PAD: IV16,
  // RC2 and RC5 (CK_RC2_* and CK_RC5_* parameters)
  RC2_ECB: RAW, RC2_CBC: RAW, RC2_CBC_PAD: RAW, RC2_MAC: RAW, RC2_MAC_GENERAL: RAW,
  RC5_ECB: RAW, RC5_CBC: RAW, RC5_CBC_PAD: RAW, RC5_MAC: RAW, RC5_MAC_GENERAL: RAW,
  // Fortezza family (24-byte IVs)
  SKIPJACK_ECB64: IV24, SKIPJACK_CBC64: IV24, SKIPJACK_OFB64: IV24, SKIPJACK_CFB64: IV24,
  SKIPJACK_CFB32: IV24, SKIPJACK_CFB16: IV24, SKIPJACK_CFB8: IV24, SKIPJACK_PRIVATE_WRAP: RAW, SKIPJACK_RELAYX: RAW,
  BATON_ECB128: IV24, BATON_ECB96: IV24, BATON_CBC128: IV24, BATON_COUNTER: IV24, BATON_SHUFFLE: IV24,
  JUNIPER_ECB128: IV24, JUNIPER_CBC128: IV24, JUNIPER_COUNTER: IV24, JUNIPER_SHUFFLE: IV24,
  // GOST
  GOST28147: IV8, GOST28147_MAC: OPTIONAL_RAW, GOST28147_KEY_WRAP: OPTIONAL_RAW,
  GOSTR3410_WITH_GOSTR3411: OPTIONAL_RAW, GOSTR3411: OPTIONAL_RAW, GOSTR3411_HMAC: OPTIONAL_RAW,
  GOSTR3410_KEY_WRAP: RAW, GOSTR3410_DERIVE: RAW,
  // Key derivation by concatenation or extraction
  CONCATENATE_BASE_AND_KEY: RAW, CONCATENATE_BASE_AND_DATA: RAW, CONCATENATE_DATA_AND_BASE: RAW,
  XOR_BASE_AND_DATA: RAW, EXTRACT_KEY_FROM_KEY: RAW,
  // SSL, TLS, WTLS
  SSL3_PRE_MASTER_KEY_GEN: RAW, SSL3_MASTER_KEY_DERIVE: RAW, SSL3_KEY_AND_MAC_DERIVE: RAW, SSL3_MASTER_KEY_DERIVE_DH: RAW,
  TLS_PRE_MASTER_KEY_GEN: RAW, TLS_MASTER_KEY_DERIVE: RAW, TLS_KEY_AND_MAC_DERIVE: RAW, TLS_MASTER_KEY_DERIVE_DH: RAW,
  TLS_PRF: RAW, WTLS_PRE_MASTER_KEY_GEN: RAW, WTLS_MASTER_KEY_DERIVE: RAW, WTLS_MASTER_KEY_DERIVE_DH_ECC: RAW,
  WTLS_PRF: RAW, WTLS_SERVER_KEY_AND_MAC_DERIVE: RAW, WTLS_CLIENT_KEY_AND_MAC_DERIVE: RAW,
  // Password-based
  PBE_MD2_DES_CBC: RAW, PBE_MD5_DES_CBC: RAW, PBE_MD5_CAST_CBC: RAW, PBE_MD5_CAST3_CBC: RAW,
  PBE_MD5_CAST5_CBC: RAW, PBE_MD5_CAST128_CBC: RAW, PBE_SHA1_CAST5_CBC: RAW, PBE_SHA1_CAST128_CBC: RAW,
  PBE_SHA1_RC4_128: RAW, PBE_SHA1_RC4_40: RAW, PBE_SHA1_DES3_EDE_CBC: RAW, PBE_SHA1_DES2_EDE_CBC: RAW,
  PBE_SHA1_RC2_128_CBC: RAW, PBE_SHA1_RC2_40_CBC: RAW, PKCS5_PBKD2: RAW, PBA_SHA1_WITH_SHA1_HMAC: RAW,
  // One-time passwords, key wrapping, vendor mechanisms
  SECURID: RAW, HOTP: RAW, ACTI: RAW, KEY_WRAP_SET_OAEP: RAW,
  VENDOR_DEFINED: OPTIONAL_RAW,
} as const satisfies { readonly [N in MechanismName]?: ParameterShape };

/**
 * The mechanisms whose parameter has the shape `S` in {@link PARAMETER_SHAPES}:
 * `MechanismNameOfShape<{ kind: 'gcm' }>` is `'AES_GCM'`.
 */
export type MechanismNameOfShape<S> = {
  [N in keyof typeof PARAMETER_SHAPES]: (typeof PARAMETER_SHAPES)[N] extends S ? N : never;
}[keyof typeof PARAMETER_SHAPES];

/** Mechanisms that take no parameter. */
export type NoParameterMechanismName = Exclude<MechanismName, keyof typeof PARAMETER_SHAPES>;

/**
 * A mechanism by name, with its parameter as named fields. The name is a CKM_ name without
 * the prefix; {@link toMechanism} checks each field and refuses unknown ones.
 * @example { name: 'AES_GCM', iv: randomBytes(12), aad, tagBits: 128 }
 * @example { name: 'SHA384_RSA_PKCS_PSS' } // MGF1-SHA384, salt of 48 bytes
 * @example { name: 'ECDH1_DERIVE', publicData: peerPoint } // kdf NULL
 */
export type FriendlyMechanism =
  | {
      /** A mechanism that takes no parameter. */
      name: NoParameterMechanismName;
    }
  | {
      /** A block cipher mode with an IV of one block (8, 16 or 24 bytes). */
      name: MechanismNameOfShape<{ kind: 'iv' }>;
      /** The IV, exactly one block. */
      iv: Buffer | Uint8Array;
    }
  | {
      /** CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD. */
      name: MechanismNameOfShape<{ kind: 'optionalIv' }>;
      /** The 8-byte initial value; left out, the default of RFC 3394 is used. */
      iv?: Buffer | Uint8Array;
    }
  | {
      /** CKM_AES_GCM (CK_GCM_PARAMS). */
      name: MechanismNameOfShape<{ kind: 'gcm' }>;
      /** The IV (nonce), usually 12 bytes. Must be unique per key. */
      iv: Buffer | Uint8Array;
      /** Additional authenticated data. */
      aad?: Buffer | Uint8Array;
      /** Tag length in bits, a multiple of 8 in 32..128. @default 128 */
      tagBits?: number;
    }
  | {
      /** CKM_AES_CCM (CK_CCM_PARAMS). */
      name: MechanismNameOfShape<{ kind: 'ccm' }>;
      /** Length of the data in bytes. */
      dataLength: number;
      /** The nonce, 7 to 13 bytes. */
      nonce: Buffer | Uint8Array;
      /** Additional authenticated data. */
      aad?: Buffer | Uint8Array;
      /** Tag length in bytes: 4, 6, ..., 16. */
      macLength: number;
    }
  | {
      /** CKM_AES_CTR, CKM_CAMELLIA_CTR (CK_AES_CTR_PARAMS). */
      name: MechanismNameOfShape<{ kind: 'ctr' }>;
      /** How many low-order bits of the counter block are the counter, 1..128. */
      counterBits: number;
      /** The 16-byte initial counter block. */
      counterBlock: Buffer | Uint8Array;
    }
  | {
      /** CKM_RSA_PKCS_OAEP (CK_RSA_PKCS_OAEP_PARAMS). */
      name: MechanismNameOfShape<{ kind: 'oaep' }>;
      /** The digest. @default 'SHA_1' (the only one SoftHSM unwraps with) */
      hashAlg?: HashName | number;
      /** The mask generation function. @default MGF1 with `hashAlg` */
      mgf?: MgfName | number;
      /** CKZ_* source of the encoding parameter. @default 1 (CKZ_DATA_SPECIFIED) */
      source?: number;
      /** The label (encoding parameter). @default none */
      sourceData?: Buffer | Uint8Array;
    }
  | {
      /** A hashed RSA PSS mechanism (CK_RSA_PKCS_PSS_PARAMS); the digest is its own. */
      name: MechanismNameOfShape<{ kind: 'pss'; hash: HashName }>;
      /** The digest; must be the mechanism's own. @default the mechanism's digest */
      hashAlg?: HashName | number;
      /** The mask generation function. @default MGF1 with the mechanism's digest */
      mgf?: MgfName | number;
      /** Salt length in bytes. @default the digest's length */
      saltLen?: number;
    }
  | {
      /** CKM_RSA_PKCS_PSS on a digest computed by the caller (CK_RSA_PKCS_PSS_PARAMS). */
      name: 'RSA_PKCS_PSS';
      /** The digest the caller computed. */
      hashAlg: HashName | number;
      /** The mask generation function. @default MGF1 with `hashAlg` */
      mgf?: MgfName | number;
      /** Salt length in bytes. @default the digest's length */
      saltLen?: number;
    }
  | {
      /** CKM_ECDH1_DERIVE, CKM_ECDH1_COFACTOR_DERIVE (CK_ECDH1_DERIVE_PARAMS). */
      name: MechanismNameOfShape<{ kind: 'ecdh' }>;
      /** Key derivation function on the shared secret. @default 'NULL' */
      kdf?: KdfName | number;
      /** The other party's public point (DER octet string or raw, as the token expects). */
      publicData: Buffer | Uint8Array;
      /** Data shared by both parties; must be left out with kdf NULL. */
      sharedData?: Buffer | Uint8Array;
    }
  | {
      /** A MAC mechanism with a chosen output length (CK_MAC_GENERAL_PARAMS). */
      name: MechanismNameOfShape<{ kind: 'macLength' }>;
      /** Length of the MAC in bytes. */
      macLength: number;
    }
  | {
      /** A mechanism whose parameter has no friendly form here. */
      name: MechanismNameOfShape<{ kind: 'raw' }>;
      /** The parameter as pkcs11js takes it: a Buffer, a number or a CK_PARAMS_* object. */
      parameter: RawParameter;
    }
  | {
      /** A mechanism whose parameter is optional and has no friendly form here. */
      name: MechanismNameOfShape<{ kind: 'optionalRaw' }>;
      /** The parameter as pkcs11js takes it, if any. */
      parameter?: RawParameter;
    };

/**
 * Mechanisms that can be given by name alone: those without a parameter, and those whose
 * parameter fields all have defaults (`'SHA256_RSA_PKCS_PSS'`, `'RSA_PKCS_OAEP'`,
 * `'AES_KEY_WRAP_PAD'`, ...): the names of the {@link FriendlyMechanism} forms that
 * `{ name }` alone describes.
 */
export type SimpleMechanismName = FriendlyMechanism extends infer M ? (M extends { name: infer N } ? ({ name: N } extends M ? N : never) : never) : never;

/**
 * A `{ mechanism, parameter }` object as pkcs11js takes it, typed loosely enough to write a
 * CK_PARAMS_* object literal inline; byte fields may be Uint8Array.
 */
export type RawMechanism = {
  /** CKM_* number. */
  mechanism: number;
  /** A byte string, a CK_ULONG, or a CK_PARAMS_* object (`type` is the CK_PARAMS_* number). */
  parameter?: RawParameter;
};

/**
 * A mechanism in any accepted form: a CKM_* number, a name ({@link SimpleMechanismName}), a
 * {@link FriendlyMechanism} object, or a `{ mechanism, parameter }` object (pkcs11js
 * `Mechanism` or {@link RawMechanism}).
 */
export type MechanismInput = number | SimpleMechanismName | FriendlyMechanism | Mechanism | RawMechanism;

const SHAPES: ReadonlyMap<string, ParameterShape> = new Map(Object.entries(PARAMETER_SHAPES));

/** The CKM_* number of a mechanism name (without the prefix), or undefined if pkcs11js has no such constant. */
export function mechanismNumber(name: string): number | undefined {
  return MECHANISMS.get(name);
}

/** The shape of the parameter a mechanism name takes, or undefined if it takes none (or is unknown). */
export function parameterShape(name: string): ParameterShape | undefined {
  return SHAPES.get(name);
}

function unknownMechanism(name: string): InvalidArgumentError {
  const suggestion = closest(name, MECHANISMS.keys());
  return new InvalidArgumentError(
    `unknown mechanism ${quote(name)}` +
      (suggestion
        ? `; did you mean ${quote(suggestion)}?`
        : '; expected a CKM_ name without the prefix (e.g. "AES_GCM"), a CKM_* number or { mechanism, parameter }'),
  );
}

function friendlyMechanism(input: Record<string, unknown>): Mechanism {
  const name = input.name;
  if (typeof name !== 'string') {
    throw new InvalidArgumentError(`mechanism.name must be a string, received ${describeType(name)}`);
  }
  const mechanism = MECHANISMS.get(name);
  if (mechanism === undefined) throw unknownMechanism(name);
  const shape = SHAPES.get(name);
  if (shape) return withParameter(mechanism, name, shape, input);
  const extra = Object.keys(input).find((key) => key !== 'name');
  if (extra !== undefined) {
    throw new InvalidArgumentError(`mechanism ${name} takes no parameter: unknown property ${quote(extra)}; allowed: name`);
  }
  return { mechanism };
}

function rawMechanism(input: Record<string, unknown>): Mechanism {
  for (const key of Object.keys(input)) {
    if (key !== 'mechanism' && key !== 'parameter') {
      throw new InvalidArgumentError(`mechanism: unknown property ${quote(key)}; allowed: mechanism, parameter`);
    }
  }
  const { mechanism, parameter } = input;
  if (!isUlong(mechanism)) {
    throw new InvalidArgumentError(
      `mechanism.mechanism must be a CKM_* number in 0..0xffffffff, received ${typeof mechanism === 'number' ? String(mechanism) : describeType(mechanism)}`,
    );
  }
  const converted = toRawParameter(`CKM 0x${mechanism.toString(16)}`, parameter);
  return converted === undefined ? { mechanism } : { mechanism, parameter: converted };
}

/**
 * Converts a mechanism in any accepted form to the pkcs11js form. Parameters are plain
 * objects of numbers and unpooled Buffers (Uint8Arrays are copied into Buffers), so the
 * result survives structured clone to a worker thread.
 *
 * Friendly forms are checked against the mechanism's parameter shape: a field missing,
 * mistyped or of the wrong length, or a parameter given to a mechanism that takes none, is
 * refused. `{ mechanism, parameter }` is passed through with only pkcs11js's own required
 * fields checked, so any mechanism and parameter can still be given raw.
 * @example toMechanism('SHA256_RSA_PKCS_PSS') // SHA-256, MGF1-SHA256, salt 32
 * @example toMechanism({ name: 'AES_GCM', iv }) // CK_GCM_PARAMS, ivBits = iv.length * 8, tagBits 128
 * @example toMechanism({ name: 'AES_CTR', counterBits: 32, counterBlock }) // raw CK_AES_CTR_PARAMS
 * @throws {@link InvalidArgumentError} echoing the bad name or number, never parameter bytes
 */
export function toMechanism(input: MechanismInput): Mechanism {
  if (typeof input === 'number') {
    if (isUlong(input)) return { mechanism: input };
    throw new InvalidArgumentError(`mechanism must be a CKM_* number in 0..0xffffffff, received ${String(input)}`);
  }
  if (typeof input === 'string') {
    const shape = SHAPES.get(input);
    if (shape && needsParameters(shape)) {
      throw new InvalidArgumentError(`mechanism ${quote(input)} needs parameters: pass ${usage(input, shape)}`);
    }
    return friendlyMechanism({ name: input });
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
