/**
 * Commands: one PKCS#11 unit of work as plain data. A transport carries them to where
 * the module lives (a worker thread now, a member host process later) and
 * `runCommand` executes them there with synchronous pkcs11js calls.
 *
 * Everything here must survive structured clone and, later, a socket frame: Buffers,
 * numbers, strings, booleans and plain objects only. Handles are 8-byte buffers.
 */
import type { Mechanism } from 'pkcs11js';

/** A PKCS#11 handle (session, object or slot) as pkcs11js gives it: 8 bytes. */
export type Handle = Buffer;

/** An attribute as sent to a module. */
export interface WireAttribute {
  readonly type: number;
  readonly value?: number | boolean | string | Buffer;
}

/** An attribute as read back; `value` is undefined when the object has no such attribute or hides it. */
export interface ReadAttribute {
  readonly type: number;
  readonly value: Buffer | undefined;
}

/** An object's class and key type (CKO_*, CKK_*; no key type for data objects). */
export interface ObjectKind {
  readonly objectClass: number;
  readonly keyType?: number | undefined;
}

/** What a token says of one mechanism (C_GetMechanismInfo). */
export interface MechanismLimits {
  readonly type: number;
  readonly minKeySize: number;
  readonly maxKeySize: number;
  /** CKF_* flags: what the mechanism can do on the token. */
  readonly flags: number;
}

/** The flags and limits of a token's C_GetTokenInfo; CK_ULONG values of 2^53 or more (CK_UNAVAILABLE_INFORMATION) read as -1. */
export interface TokenLimitsRead {
  readonly flags: number;
  readonly maxSessionCount: number;
  readonly sessionCount: number;
  readonly maxRwSessionCount: number;
  readonly rwSessionCount: number;
  readonly maxPinLen: number;
  readonly minPinLen: number;
  readonly totalPublicMemory: number;
  readonly freePublicMemory: number;
  readonly totalPrivateMemory: number;
  readonly freePrivateMemory: number;
}

/** The commands every transport understands, keyed by name: arguments and result. */
export interface CommandMap {
  openSession: { args: { slot: Handle }; result: Handle };
  closeSession: { args: { session: Handle }; result: void };
  login: { args: { session: Handle; userType: number; pin: string }; result: void };
  logout: { args: { session: Handle }; result: void };
  /** C_InitPIN: the security officer sets the user PIN. */
  initPin: { args: { session: Handle; pin: string }; result: void };
  /** C_SetPIN: the logged-in user's PIN (the SO's when the SO is logged in) changes from `oldPin` to `newPin`. */
  setPin: { args: { session: Handle; oldPin: string; newPin: string }; result: void };
  /** C_GetMechanismList of the session's slot. */
  getMechanismList: { args: { session: Handle }; result: number[] };
  /** C_GetMechanismInfo of each of `mechanisms` on the session's slot, in one round trip. */
  getMechanismInfo: { args: { session: Handle; mechanisms: readonly number[] }; result: MechanismLimits[] };
  /** C_GetTokenInfo of the session's slot: the flags and limits (texts and clock left out). */
  getTokenInfo: { args: { session: Handle }; result: TokenLimitsRead };
  encrypt: { args: { session: Handle; mechanism: Mechanism; key: Handle; data: Buffer }; result: Buffer };
  decrypt: { args: { session: Handle; mechanism: Mechanism; key: Handle; data: Buffer }; result: Buffer };
  sign: { args: { session: Handle; mechanism: Mechanism; key: Handle; data: Buffer }; result: Buffer };
  verify: { args: { session: Handle; mechanism: Mechanism; key: Handle; data: Buffer; signature: Buffer }; result: boolean };
  digest: { args: { session: Handle; mechanism: Mechanism; data: Buffer }; result: Buffer };
  generateRandom: { args: { session: Handle; length: number }; result: Buffer };
  /** C_SeedRandom: `seed` mixed into the token's generator. */
  seedRandom: { args: { session: Handle; seed: Buffer }; result: void };
  findObjects: { args: { session: Handle; template: readonly WireAttribute[] }; result: Handle[] };
  /** `kind`: the object's class and key type when the caller knows them (a creation): spares the module two reads. */
  getAttributes: { args: { session: Handle; object: Handle; types: readonly number[]; kind?: ObjectKind }; result: ReadAttribute[] };
  setAttributes: { args: { session: Handle; object: Handle; template: readonly WireAttribute[] }; result: void };
  createObject: { args: { session: Handle; template: readonly WireAttribute[] }; result: Handle };
  copyObject: { args: { session: Handle; object: Handle; template: readonly WireAttribute[] }; result: Handle };
  destroyObject: { args: { session: Handle; object: Handle }; result: void };
  generateKey: { args: { session: Handle; mechanism: Mechanism; template: readonly WireAttribute[] }; result: Handle };
  generateKeyPair: {
    args: { session: Handle; mechanism: Mechanism; publicTemplate: readonly WireAttribute[]; privateTemplate: readonly WireAttribute[] };
    result: { publicKey: Handle; privateKey: Handle };
  };
  wrapKey: { args: { session: Handle; mechanism: Mechanism; wrappingKey: Handle; key: Handle }; result: Buffer };
  unwrapKey: {
    args: { session: Handle; mechanism: Mechanism; unwrappingKey: Handle; wrapped: Buffer; template: readonly WireAttribute[] };
    result: Handle;
  };
  deriveKey: { args: { session: Handle; mechanism: Mechanism; baseKey: Handle; template: readonly WireAttribute[] }; result: Handle };
  /** SHA-256 (or another digest mechanism) over a key's value, computed inside the token. */
  digestKey: { args: { session: Handle; mechanism: Mechanism; key: Handle }; result: Buffer };
  // Multi-part operations: each step on the session the operation began on (a lease).
  encryptInit: { args: { session: Handle; mechanism: Mechanism; key: Handle }; result: void };
  encryptUpdate: { args: { session: Handle; data: Buffer }; result: Buffer };
  /** `pending`: input bytes not yet given back as output, so the Final's buffer fits at once. */
  encryptFinal: { args: { session: Handle; pending: number }; result: Buffer };
  decryptInit: { args: { session: Handle; mechanism: Mechanism; key: Handle }; result: void };
  decryptUpdate: { args: { session: Handle; data: Buffer }; result: Buffer };
  decryptFinal: { args: { session: Handle; pending: number }; result: Buffer };
  signInit: { args: { session: Handle; mechanism: Mechanism; key: Handle }; result: void };
  signUpdate: { args: { session: Handle; data: Buffer }; result: void };
  signFinal: { args: { session: Handle }; result: Buffer };
  verifyInit: { args: { session: Handle; mechanism: Mechanism; key: Handle }; result: void };
  verifyUpdate: { args: { session: Handle; data: Buffer }; result: void };
  /** False for a wrong signature, as `verify`. */
  verifyFinal: { args: { session: Handle; signature: Buffer }; result: boolean };
  digestInit: { args: { session: Handle; mechanism: Mechanism }; result: void };
  digestUpdate: { args: { session: Handle; data: Buffer }; result: void };
  /** C_DigestKey: a key's value as the next part of an open digest. */
  digestUpdateKey: { args: { session: Handle; key: Handle }; result: void };
  digestFinal: { args: { session: Handle }; result: Buffer };
  /**
   * C_Login(CKU_CONTEXT_SPECIFIC) on the session of an operation, after its Init: authorises
   * that operation (a key with CKA_ALWAYS_AUTHENTICATE). `pin` is a secret: never logged.
   */
  contextLogin: { args: { session: Handle; pin: string }; result: void };
  /** C_Encrypt on a session whose C_EncryptInit (and context login) ran before it. */
  encryptOnce: { args: { session: Handle; data: Buffer }; result: Buffer };
  /** C_Decrypt on a session whose C_DecryptInit (and context login) ran before it. */
  decryptOnce: { args: { session: Handle; data: Buffer }; result: Buffer };
  /** C_Sign on a session whose C_SignInit (and context login) ran before it. */
  signOnce: { args: { session: Handle; data: Buffer }; result: Buffer };
  /** C_Verify on a session whose C_VerifyInit (and context login) ran before it; false for a wrong signature, as `verify`. */
  verifyOnce: { args: { session: Handle; data: Buffer; signature: Buffer }; result: boolean };
}

/** The steps of multi-part operations: they need the session their Init ran on. */
export const MULTIPART_OPS = [
  'encryptInit',
  'encryptUpdate',
  'encryptFinal',
  'decryptInit',
  'decryptUpdate',
  'decryptFinal',
  'signInit',
  'signUpdate',
  'signFinal',
  'verifyInit',
  'verifyUpdate',
  'verifyFinal',
  'digestInit',
  'digestUpdate',
  'digestUpdateKey',
  'digestFinal',
  'contextLogin',
  'encryptOnce',
  'decryptOnce',
  'signOnce',
  'verifyOnce',
] as const;

/** A step of a multi-part operation. */
export type MultipartCommand = Extract<Command, { op: (typeof MULTIPART_OPS)[number] }>;

const MULTIPART = new Set<string>(MULTIPART_OPS);

/** True for a step of a multi-part operation. */
export function isMultipartCommand(c: Command): c is MultipartCommand {
  return MULTIPART.has(c.op);
}

/** Name of a command. */
export type CommandName = keyof CommandMap;

/** A command ready to be sent: its name and its arguments. */
export type Command<N extends CommandName = CommandName> = N extends CommandName ? { readonly op: N } & CommandMap[N]['args'] : never;

/** What a command resolves to. */
export type CommandResult<N extends CommandName> = CommandMap[N]['result'];

/**
 * The shape of a failure as it crosses a thread or process boundary: enough to rebuild
 * a typed error on the other side, nothing more (never arguments: they may hold secrets).
 */
export interface WireError {
  /** PKCS#11 return value when the module answered with one. */
  readonly rv?: number;
  /** The PKCS#11 function that failed, e.g. `C_Sign`. */
  readonly fn?: string;
  /** A message for anything that is not a PKCS#11 return value (a bug, a native error). */
  readonly message: string;
}
