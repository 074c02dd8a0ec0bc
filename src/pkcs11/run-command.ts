/**
 * Executes one {@link Command} with synchronous pkcs11js calls. The same function runs in
 * a worker thread (in-process transport) and, later, in a member host process, so the
 * PKCS#11 call sequence of each operation is written once.
 */
import type { Mechanism, PKCS11, Template } from 'pkcs11js';
import { pkcs11js } from '../native/pkcs11js.js';
import { ckrValue } from '../errors/return-codes.js';
import type { Command, CommandName, CommandResult, Handle, ObjectKind, ReadAttribute, WireAttribute, WireError } from './commands.js';

/** Output room beyond the input length: a GCM tag, a CBC pad block, an RSA-8192 block. */
export const OUTPUT_SLACK = 1024;

type Runner<N extends CommandName> = (p: PKCS11, c: Extract<Command, { op: N }>, output: Buffer | undefined) => CommandResult<N>;
type RunnerTable = { [N in CommandName]: Runner<N> };

/** pkcs11js's types want mutable arrays; commands keep theirs readonly. */
const tpl = (t: readonly WireAttribute[]): Template => t as Template;
const mech = (m: Mechanism): Mechanism => m;

const RUNNERS: RunnerTable = {
  openSession: (p, c) => p.C_OpenSession(c.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION),
  closeSession: (p, c) => p.C_CloseSession(c.session),
  login: (p, c) => p.C_Login(c.session, c.userType, c.pin),
  logout: (p, c) => p.C_Logout(c.session),
  initPin: (p, c) => p.C_InitPIN(c.session, c.pin),
  setPin: (p, c) => p.C_SetPIN(c.session, c.oldPin, c.newPin),
  getMechanismList: (p, c) => p.C_GetMechanismList(p.C_GetSessionInfo(c.session).slotID),
  getMechanismInfo: (p, c) => {
    const slot = p.C_GetSessionInfo(c.session).slotID;
    return c.mechanisms.map((type) => {
      const info = p.C_GetMechanismInfo(slot, type);
      return { type, minKeySize: info.minKeySize, maxKeySize: info.maxKeySize, flags: info.flags };
    });
  },
  getTokenInfo: (p, c) => {
    const t = p.C_GetTokenInfo(p.C_GetSessionInfo(c.session).slotID) as unknown as Record<string, number | bigint>;
    // CK_UNAVAILABLE_INFORMATION is all ones: a number past 2^53 (or a bigint) in pkcs11js.
    const n = (k: string): number => (typeof t[k] === 'number' && (t[k] as number) < 2 ** 53 ? (t[k] as number) : -1);
    return {
      flags: n('flags'),
      maxSessionCount: n('maxSessionCount'),
      sessionCount: n('sessionCount'),
      maxRwSessionCount: n('maxRwSessionCount'),
      rwSessionCount: n('rwSessionCount'),
      maxPinLen: n('maxPinLen'),
      minPinLen: n('minPinLen'),
      totalPublicMemory: n('totalPublicMemory'),
      freePublicMemory: n('freePublicMemory'),
      totalPrivateMemory: n('totalPrivateMemory'),
      freePrivateMemory: n('freePrivateMemory'),
    };
  },
  encrypt: (p, c, out) => {
    p.C_EncryptInit(c.session, mech(c.mechanism), c.key);
    return p.C_Encrypt(c.session, c.data, out ?? Buffer.allocUnsafeSlow(c.data.length + OUTPUT_SLACK));
  },
  decrypt: (p, c, out) => {
    p.C_DecryptInit(c.session, mech(c.mechanism), c.key);
    return p.C_Decrypt(c.session, c.data, out ?? Buffer.allocUnsafeSlow(c.data.length + OUTPUT_SLACK));
  },
  sign: (p, c, out) => {
    p.C_SignInit(c.session, mech(c.mechanism), c.key);
    return p.C_Sign(c.session, c.data, out ?? Buffer.allocUnsafeSlow(OUTPUT_SLACK));
  },
  verify: (p, c) => {
    p.C_VerifyInit(c.session, mech(c.mechanism), c.key);
    try {
      return p.C_Verify(c.session, c.data, c.signature);
    } catch (error) {
      // A wrong signature is an answer, not a failure.
      if ((error as { code?: number }).code === pkcs11js.CKR_SIGNATURE_INVALID) return false;
      throw error;
    }
  },
  digest: (p, c, out) => {
    p.C_DigestInit(c.session, mech(c.mechanism));
    return p.C_Digest(c.session, c.data, out ?? Buffer.allocUnsafeSlow(128));
  },
  generateRandom: (p, c) => p.C_GenerateRandom(c.session, Buffer.allocUnsafeSlow(c.length)),
  seedRandom: (p, c) => p.C_SeedRandom(c.session, c.seed),
  findObjects: (p, c) => {
    p.C_FindObjectsInit(c.session, tpl(c.template));
    const found: Handle[] = [];
    try {
      for (;;) {
        const batch = p.C_FindObjects(c.session, 256);
        if (batch.length === 0) break;
        found.push(...batch);
      }
    } finally {
      p.C_FindObjectsFinal(c.session);
    }
    return found;
  },
  getAttributes: (p, c) => readAttributes(p, c.session, c.object, c.types, c.kind),
  setAttributes: (p, c) => p.C_SetAttributeValue(c.session, c.object, tpl(c.template)),
  createObject: (p, c) => p.C_CreateObject(c.session, tpl(c.template)),
  copyObject: (p, c) => p.C_CopyObject(c.session, c.object, tpl(c.template)),
  destroyObject: (p, c) => p.C_DestroyObject(c.session, c.object),
  generateKey: (p, c) => p.C_GenerateKey(c.session, mech(c.mechanism), tpl(c.template)),
  generateKeyPair: (p, c) => {
    const pair = p.C_GenerateKeyPair(c.session, mech(c.mechanism), tpl(c.publicTemplate), tpl(c.privateTemplate));
    return { publicKey: pair.publicKey, privateKey: pair.privateKey };
  },
  wrapKey: (p, c) => p.C_WrapKey(c.session, mech(c.mechanism), c.wrappingKey, c.key, Buffer.allocUnsafeSlow(16 * 1024)),
  unwrapKey: (p, c) => p.C_UnwrapKey(c.session, mech(c.mechanism), c.unwrappingKey, c.wrapped, tpl(c.template)),
  deriveKey: (p, c) => p.C_DeriveKey(c.session, mech(c.mechanism), c.baseKey, tpl(c.template)),
  digestKey: (p, c) => {
    p.C_DigestInit(c.session, mech(c.mechanism));
    p.C_DigestKey(c.session, c.key);
    return p.C_DigestFinal(c.session, Buffer.allocUnsafeSlow(128));
  },
  encryptInit: (p, c) => p.C_EncryptInit(c.session, mech(c.mechanism), c.key),
  // `output`: the multi-part caller's own buffer, tried first (multipart-operation.ts).
  encryptUpdate: (p, c, output) => withRoom(c.data.length + OUTPUT_SLACK, (out) => p.C_EncryptUpdate(c.session, c.data, out), output),
  encryptFinal: (p, c) => withRoom(c.pending + OUTPUT_SLACK, (out) => p.C_EncryptFinal(c.session, out)),
  decryptInit: (p, c) => p.C_DecryptInit(c.session, mech(c.mechanism), c.key),
  decryptUpdate: (p, c, output) => withRoom(c.data.length + OUTPUT_SLACK, (out) => p.C_DecryptUpdate(c.session, c.data, out), output),
  decryptFinal: (p, c) => withRoom(c.pending + OUTPUT_SLACK, (out) => p.C_DecryptFinal(c.session, out)),
  signInit: (p, c) => p.C_SignInit(c.session, mech(c.mechanism), c.key),
  signUpdate: (p, c) => p.C_SignUpdate(c.session, c.data),
  signFinal: (p, c) => withRoom(OUTPUT_SLACK, (out) => p.C_SignFinal(c.session, out)),
  verifyInit: (p, c) => p.C_VerifyInit(c.session, mech(c.mechanism), c.key),
  verifyUpdate: (p, c) => p.C_VerifyUpdate(c.session, c.data),
  verifyFinal: (p, c) => {
    try {
      return p.C_VerifyFinal(c.session, c.signature);
    } catch (error) {
      if ((error as { code?: number }).code === pkcs11js.CKR_SIGNATURE_INVALID) return false;
      throw error;
    }
  },
  digestInit: (p, c) => p.C_DigestInit(c.session, mech(c.mechanism)),
  digestUpdate: (p, c) => p.C_DigestUpdate(c.session, c.data),
  digestUpdateKey: (p, c) => p.C_DigestKey(c.session, c.key),
  digestFinal: (p, c) => withRoom(128, (out) => p.C_DigestFinal(c.session, out)),
  contextLogin: (p, c) => p.C_Login(c.session, pkcs11js.CKU_CONTEXT_SPECIFIC, c.pin),
  encryptOnce: (p, c) => withRoom(c.data.length + OUTPUT_SLACK, (out) => p.C_Encrypt(c.session, c.data, out)),
  decryptOnce: (p, c) => withRoom(c.data.length + OUTPUT_SLACK, (out) => p.C_Decrypt(c.session, c.data, out)),
  signOnce: (p, c) => withRoom(OUTPUT_SLACK, (out) => p.C_Sign(c.session, c.data, out)),
  verifyOnce: (p, c) => {
    try {
      return p.C_Verify(c.session, c.data, c.signature);
    } catch (error) {
      if ((error as { code?: number }).code === pkcs11js.CKR_SIGNATURE_INVALID) return false;
      throw error;
    }
  },
};

/** The most output room an Update or Final is given, after growing from its first guess. */
const MAX_OUTPUT = 64 * 1024 * 1024;

/**
 * Calls `call` with an output buffer of `size` bytes, and again with 4 times the room while
 * the module answers CKR_BUFFER_TOO_SMALL (which leaves the operation active): the caller
 * never sees that dance, only the whole result. The first guess is right unless a token
 * holds back more than the input so far: pkcs11js does not give the length asked for.
 * @param first a buffer of the caller's to try first (an Update writing straight into the
 *   application's buffer); on CKR_BUFFER_TOO_SMALL the dance goes on from `size`
 */
function withRoom(size: number, call: (out: Buffer) => Buffer, first?: Buffer): Buffer {
  if (first !== undefined) {
    try {
      return call(first);
    } catch (error) {
      if (toWireError(error).rv !== pkcs11js.CKR_BUFFER_TOO_SMALL) throw error;
    }
  }
  for (let room = size; ; room = Math.min(room * 8, MAX_OUTPUT)) {
    try {
      return call(Buffer.allocUnsafeSlow(room));
    } catch (error) {
      // pkcs11js reports this one as a plain Error ("CKR_BUFFER_TOO_SMALL:336"), with no code.
      if (toWireError(error).rv !== pkcs11js.CKR_BUFFER_TOO_SMALL || room >= MAX_OUTPUT) throw error;
    }
  }
}

/** Most entries in each learning cache: kinds of objects times attribute lists in use are few. */
const LEARNED_MAX = 256;
/** Attribute lists whose whole read failed before: try the object's kind first. */
const failsWhole = new Set<string>();
/** `kind|types` -> the types of that list that objects of that kind have (not CKR_ATTRIBUTE_TYPE_INVALID). */
const answeredByKind = new Map<string, readonly number[]>();

const isAbsent = (error: unknown): boolean => {
  const rv = (error as { code?: number }).code;
  return rv === pkcs11js.CKR_ATTRIBUTE_TYPE_INVALID || rv === pkcs11js.CKR_ATTRIBUTE_SENSITIVE;
};

/** A CK_ULONG attribute value as text ('-' when absent), so that a kind read and a kind given name the same entry. */
function ulongText(value: Buffer | undefined): string {
  if (value === undefined || value.length === 0) return '-';
  return String(value.length >= 8 ? value.readBigUInt64LE(0) : value.readUInt32LE(0));
}

/** Reads one attribute; `value` undefined when the object does not have it (`invalid`) or hides it. */
function readOne(p: PKCS11, session: Handle, object: Handle, type: number): { readonly value: Buffer | undefined; readonly invalid: boolean } {
  try {
    return { value: p.C_GetAttributeValue(session, object, [{ type }])[0]?.value, invalid: false };
  } catch (error) {
    if (isAbsent(error)) return { value: undefined, invalid: (error as { code?: number }).code === pkcs11js.CKR_ATTRIBUTE_TYPE_INVALID };
    throw error;
  }
}

/**
 * Reads attributes, tolerating ones the object does not have or hides: PKCS#11 fails the
 * whole read for one such attribute, so reading them one by one is the fallback. That
 * costs a call (and often an exception) per attribute (31 for an EC key's identity and
 * replica attributes); so the types that objects of one kind (class and key type) have are
 * learned, and the next object of that kind is read in three calls (class, key type, the rest).
 */
function readAttributes(p: PKCS11, session: Handle, object: Handle, types: readonly number[], kind?: ObjectKind): ReadAttribute[] {
  const signature = types.join(',');
  if (!failsWhole.has(signature)) {
    try {
      return p.C_GetAttributeValue(session, object, types.map((type) => ({ type }))).map((a) => ({ type: a.type, value: a.value }));
    } catch (error) {
      if (!isAbsent(error)) throw error;
      if (failsWhole.size < LEARNED_MAX) failsWhole.add(signature);
    }
  }
  // The kind, when the caller does not know it, costs two reads.
  const objectClass = kind?.objectClass ?? ulongText(readOne(p, session, object, pkcs11js.CKA_CLASS).value);
  const keyType = kind !== undefined ? (kind.keyType ?? '-') : ulongText(readOne(p, session, object, pkcs11js.CKA_KEY_TYPE).value);
  const key = `${objectClass}:${keyType}|${signature}`;
  const known = answeredByKind.get(key);
  if (known !== undefined) {
    try {
      const read = p.C_GetAttributeValue(session, object, known.map((type) => ({ type })));
      const values = new Map(read.map((a) => [a.type, a.value]));
      return types.map((type) => ({ type, value: values.get(type) }));
    } catch (error) {
      // This object hides more than others of its kind (e.g. a sensitive one): one by one.
      if (!isAbsent(error)) throw error;
    }
  }
  const read = types.map((type) => ({ type, ...readOne(p, session, object, type) }));
  if (known === undefined && answeredByKind.size < LEARNED_MAX) {
    // Only what the kind lacks is learned; what this object hides (sensitive) another
    // object of its kind may show, so it stays in the list (the one-call read then fails
    // for objects that hide it, and they are read one by one, as before).
    answeredByKind.set(key, read.filter((a) => !a.invalid).map((a) => a.type));
  }
  return read.map(({ type, value }) => ({ type, value }));
}

/**
 * Runs a command synchronously; throws what pkcs11js throws.
 * @param output where encrypt, decrypt, sign and digest write their result (the frame
 *   path passes space in its reply frame), and encryptUpdate and decryptUpdate theirs (a
 *   multi-part caller's own buffer); allocated when omitted
 */
export function runCommand<N extends CommandName>(p: PKCS11, command: Extract<Command, { op: N }>, output?: Buffer): CommandResult<N> {
  const runner = RUNNERS[command.op] as Runner<N> | undefined;
  if (runner === undefined) throw new TypeError(`unknown command ${String(command.op)}`);
  return runner(p, command, output);
}

/**
 * Where calls made one at a time on this thread write their byte results: a fresh buffer
 * of input + 1 KiB per call was garbage the collector's threads paid for on every call.
 * A result written here is a view of it, valid until the next call on this thread: copy
 * it (into a frame, or out) before making another.
 */
const SCRATCH_OUTPUT = Buffer.allocUnsafeSlow(64 * 1024 + OUTPUT_SLACK);

/** This thread's scratch output for `command`, or undefined when it has no byte result or would not fit. */
export function scratchOutput(command: Extract<Command, { op: 'encrypt' | 'decrypt' | 'sign' | 'verify' | 'digest' }>): Buffer | undefined {
  return command.op !== 'verify' && command.data.length + OUTPUT_SLACK <= SCRATCH_OUTPUT.length ? SCRATCH_OUTPUT : undefined;
}

/**
 * Turns whatever a command threw into a {@link WireError}. Only the return value, the
 * function and, for non-PKCS#11 errors, the message cross: never the arguments.
 */
export function toWireError(error: unknown): WireError {
  const e = error as { code?: unknown; method?: unknown; message?: unknown; nativeStack?: unknown } | null;
  const message = String(e?.message ?? error).split('\n')[0] ?? '';
  const fn = typeof e?.method === 'string' && /^C_\w+$/.test(e.method) ? e.method : calledFunction(e?.nativeStack);
  // pkcs11js reports some failures as plain Errors with a "CKR_NAME:number" message and no code.
  const match = /\b(CKR_[A-Z0-9_]+)(?::(\d+))?/.exec(message);
  if (typeof e?.code === 'number' && e.code !== 0 && match) return { rv: e.code, fn, message: match[1]! };
  if (match?.[2] !== undefined) return { rv: Number(match[2]), fn, message: match[1]! };
  if (match) {
    const rv = ckrValue(match[1]!);
    if (rv !== undefined) return { rv, fn, message: match[1]! };
  }
  return { message: error instanceof Error ? `${error.name}: ${message}` : message };
}

/**
 * The C_ function named in pkcs11js's `nativeStack` (`... [as C_Decrypt] ...`): pkcs11js
 * leaves `method` empty for the calls that take an output buffer (C_Encrypt, C_Decrypt, ...).
 */
function calledFunction(nativeStack: unknown): string | undefined {
  return typeof nativeStack === 'string' ? /\[as (C_\w+)\]/.exec(nativeStack)?.[1] : undefined;
}
