/**
 * How each pkcs11js function's arguments go to the facade worker and its answer comes
 * back: handles as numbers there and 8-byte Buffers here, output written into the
 * caller's buffer as pkcs11js does (and `CKR_BUFFER_TOO_SMALL` when it does not fit),
 * the TypeErrors pkcs11js gives for missing or mistyped arguments.
 */
import type { Template } from 'pkcs11js';
import { pkcs11js } from '../native/pkcs11js.js';
import { pkcs11Failure } from './facade-error.js';
import { handleBuffer, handleNumber } from './facade-protocol.js';
import { CallFailure } from './group-client.js';
import { VIRTUAL_SLOT_ID } from './slot-info.js';

/** A function of the facade: how many arguments it needs, what goes to the worker, what comes back. */
export interface FunctionSpec {
  /** Arguments pkcs11js requires (a callback comes after them). */
  readonly n: number;
  /** The worker's arguments, from the caller's (throws TypeError as pkcs11js does). */
  readonly send: (a: readonly unknown[]) => unknown[];
  /** The caller's result, from the worker's answer. */
  readonly back?: (value: unknown, a: readonly unknown[]) => unknown;
}

const wrongType = (i: number, what: string): TypeError => new TypeError(`Argument ${i} has wrong type. Should be ${what}`);

/** A handle argument as the number the worker knows (-1: not one of ours, which the worker refuses). */
export function handleArg(a: readonly unknown[], i: number): number {
  const v = a[i];
  if (!Buffer.isBuffer(v)) throw wrongType(i, 'a Buffer');
  return handleNumber(v);
}

/** A slot argument: the virtual slot, or CKR_SLOT_ID_INVALID. */
export function slotArg(a: readonly unknown[], i: number): Buffer {
  if (handleArg(a, i) !== VIRTUAL_SLOT_ID) throw new CallFailure(pkcs11Failure('CKR_SLOT_ID_INVALID'));
  return a[i] as Buffer;
}

function bufferArg(a: readonly unknown[], i: number): Buffer {
  const v = a[i];
  if (!Buffer.isBuffer(v)) throw wrongType(i, 'a Buffer');
  return v;
}

function numberArg(a: readonly unknown[], i: number): number {
  const v = a[i];
  if (typeof v !== 'number') throw wrongType(i, 'a Number');
  return v;
}

function stringArg(a: readonly unknown[], i: number): string {
  const v = a[i];
  if (typeof v !== 'string') throw wrongType(i, 'a String');
  return v;
}

function objectArg(a: readonly unknown[], i: number): object {
  const v = a[i];
  if (typeof v !== 'object' || v === null) throw wrongType(i, 'an Object');
  return v;
}

/** A template, with Dates as pkcs11js writes them (CK_DATE, YYYYMMDD). */
export function templateArg(a: readonly unknown[], i: number): Template {
  const v = a[i];
  if (!Array.isArray(v)) throw wrongType(i, 'an Array');
  return (v as Template).map((attr) => {
    if (typeof attr !== 'object' || attr === null || typeof attr.type !== 'number') throw wrongType(i, 'an Array of Attributes');
    return attr.value instanceof Date ? { type: attr.type, value: Buffer.from(attr.value.toISOString().slice(0, 10).replace(/-/g, '')) } : attr;
  });
}

/** `value` written into the caller's `out`, as pkcs11js returns it: a slice of `out`. */
export function intoOutput(value: unknown, out: Buffer): Buffer {
  const v = value as Buffer;
  if (v.length > out.length) throw new pkcs11js.Pkcs11Error(`CKR_BUFFER_TOO_SMALL:${pkcs11js.CKR_BUFFER_TOO_SMALL}`, pkcs11js.CKR_BUFFER_TOO_SMALL);
  v.copy(out);
  return v.length === out.length ? out : out.subarray(0, v.length);
}

const asHandle = (v: unknown): Buffer => handleBuffer(v as number);
const asBuffer = (v: unknown): Buffer => (Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array));

/** A crypto operation's five functions: Init, single-part, Update, Final. */
function operation(name: string, spec: Record<string, FunctionSpec>, kind: 'out' | 'sign' | 'verify' | 'digest'): void {
  const session = (a: readonly unknown[]) => handleArg(a, 0);
  spec[`C_${name}Init`] =
    kind === 'digest'
      ? { n: 2, send: (a) => [session(a), objectArg(a, 1)] }
      : { n: 3, send: (a) => [session(a), objectArg(a, 1), handleArg(a, 2)] };
  spec[`C_${name}`] =
    kind === 'verify'
      ? { n: 3, send: (a) => [session(a), bufferArg(a, 1), bufferArg(a, 2), undefined] }
      : { n: 3, send: (a) => [session(a), bufferArg(a, 1), undefined, bufferArg(a, 2).length], back: (v, a) => intoOutput(asBuffer(v), a[2] as Buffer) };
  spec[`C_${name}Update`] =
    kind === 'out'
      ? { n: 3, send: (a) => (bufferArg(a, 2), [session(a), bufferArg(a, 1)]), back: (v, a) => intoOutput(asBuffer(v ?? Buffer.alloc(0)), a[2] as Buffer) }
      : { n: 2, send: (a) => [session(a), bufferArg(a, 1)], back: () => undefined };
  spec[`C_${name}Final`] =
    kind === 'verify'
      ? { n: 2, send: (a) => [session(a), bufferArg(a, 1)] }
      : { n: 2, send: (a) => (bufferArg(a, 1), [session(a)]), back: (v, a) => intoOutput(asBuffer(v), a[1] as Buffer) };
}

/** Every function that goes to the worker. */
export const WORKER_FUNCTIONS: Readonly<Record<string, FunctionSpec>> = (() => {
  const s = (a: readonly unknown[]) => handleArg(a, 0);
  const spec: Record<string, FunctionSpec> = {
    C_GetTokenInfo: { n: 1, send: (a) => (slotArg(a, 0), []) },
    C_GetMechanismList: { n: 1, send: (a) => (slotArg(a, 0), []) },
    C_GetMechanismInfo: { n: 2, send: (a) => (slotArg(a, 0), [numberArg(a, 1)]) },
    C_OpenSession: { n: 2, send: (a) => (slotArg(a, 0), [numberArg(a, 1)]), back: asHandle },
    C_CloseSession: { n: 1, send: (a) => [s(a)] },
    C_CloseAllSessions: { n: 1, send: (a) => (slotArg(a, 0), []) },
    C_GetSessionInfo: { n: 1, send: (a) => [s(a)], back: (v) => ({ ...(v as object), slotID: handleBuffer((v as { slotID: number }).slotID) }) },
    C_Login: { n: 2, send: (a) => [s(a), numberArg(a, 1), a[2]] },
    C_Logout: { n: 1, send: (a) => [s(a)] },
    C_InitPIN: { n: 1, send: (a) => [s(a), a[1] === undefined ? undefined : stringArg(a, 1)] },
    C_SetPIN: { n: 3, send: (a) => [s(a), stringArg(a, 1), stringArg(a, 2)] },
    C_FindObjectsInit: { n: 2, send: (a) => [s(a), templateArg(a, 1)] },
    C_FindObjectsFinal: { n: 1, send: (a) => [s(a)] },
    C_GetAttributeValue: { n: 3, send: (a) => [s(a), handleArg(a, 1), templateArg(a, 2)] },
    C_SetAttributeValue: { n: 3, send: (a) => [s(a), handleArg(a, 1), templateArg(a, 2)] },
    C_CreateObject: { n: 2, send: (a) => [s(a), templateArg(a, 1)], back: asHandle },
    C_CopyObject: { n: 3, send: (a) => [s(a), handleArg(a, 1), templateArg(a, 2)], back: asHandle },
    C_DestroyObject: { n: 2, send: (a) => [s(a), handleArg(a, 1)] },
    C_GenerateKey: { n: 3, send: (a) => [s(a), objectArg(a, 1), templateArg(a, 2)], back: asHandle },
    C_GenerateKeyPair: {
      n: 4,
      send: (a) => [s(a), objectArg(a, 1), templateArg(a, 2), templateArg(a, 3)],
      back: (v) => ({ publicKey: asHandle((v as { publicKey: number }).publicKey), privateKey: asHandle((v as { privateKey: number }).privateKey) }),
    },
    C_WrapKey: { n: 5, send: (a) => (bufferArg(a, 4), [s(a), objectArg(a, 1), handleArg(a, 2), handleArg(a, 3)]), back: (v, a) => intoOutput(asBuffer(v), a[4] as Buffer) },
    C_UnwrapKey: { n: 5, send: (a) => [s(a), objectArg(a, 1), handleArg(a, 2), bufferArg(a, 3), templateArg(a, 4)], back: asHandle },
    C_DeriveKey: { n: 4, send: (a) => [s(a), objectArg(a, 1), handleArg(a, 2), templateArg(a, 3)], back: asHandle },
    C_GenerateRandom: { n: 2, send: (a) => [s(a), bufferArg(a, 1).length], back: (v, a) => intoOutput(asBuffer(v), a[1] as Buffer) },
    C_SeedRandom: { n: 2, send: (a) => [s(a), bufferArg(a, 1)] },
    C_DigestKey: { n: 2, send: (a) => [s(a), handleArg(a, 1)] },
    C_GetObjectSize: { n: 2, send: (a) => [s(a), handleArg(a, 1)] },
    C_SignRecoverInit: { n: 3, send: (a) => [s(a), objectArg(a, 1), handleArg(a, 2)] },
    C_VerifyRecoverInit: { n: 3, send: (a) => [s(a), objectArg(a, 1), handleArg(a, 2)] },
  };
  // One part in, output written into the caller's buffer: the recover functions and the dual-function updates.
  for (const fn of ['C_SignRecover', 'C_VerifyRecover', 'C_DigestEncryptUpdate', 'C_DecryptDigestUpdate', 'C_SignEncryptUpdate', 'C_DecryptVerifyUpdate']) {
    spec[fn] = { n: 3, send: (a) => (bufferArg(a, 2), [s(a), bufferArg(a, 1)]), back: (v, a) => intoOutput(asBuffer(v), a[2] as Buffer) };
  }
  operation('Encrypt', spec, 'out');
  operation('Decrypt', spec, 'out');
  operation('Sign', spec, 'sign');
  operation('Verify', spec, 'verify');
  operation('Digest', spec, 'digest');
  return spec;
})();
