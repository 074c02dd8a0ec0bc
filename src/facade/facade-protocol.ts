/**
 * The messages between a facade `PKCS11` object (the caller's thread) and the facade
 * worker thread that owns the group. One protocol for the three pkcs11js forms: a
 * synchronous call posts on the sync port and blocks on shared memory until the worker
 * has answered there; callback and promise calls post on the async port and are answered
 * through the event loop.
 *
 * Everything crosses by structured clone, which turns Buffers into Uint8Arrays: handles
 * travel as numbers, and {@link revive} makes Buffers of byte arrays again on each side.
 */
import type { MessagePort } from 'node:worker_threads';
import type { GroupConfig } from '../group/group-config.js';

/** A call of one engine function: `owner` is the calling `PKCS11` object. */
/** A call sent with the next request instead of on its own: its failure is kept for the call it prepares. */
export interface PipelinedCall {
  readonly owner: number;
  readonly fn: string;
  readonly args: readonly unknown[];
}

export interface CallRequest {
  readonly id: number;
  readonly owner: number;
  readonly fn: string;
  readonly args: readonly unknown[];
  /** Calls made before this one whose answer nobody waits for (pipelined C_*Init), run first, in order. */
  readonly pre?: readonly PipelinedCall[];
}

/** How a call failed, as pkcs11js would report it. */
export type FacadeFailure =
  | { readonly kind: 'pkcs11'; readonly ckr: string; readonly rv: number; readonly detail?: string }
  | { readonly kind: 'type'; readonly message: string }
  | { readonly kind: 'native'; readonly message: string };

/** The answer to a {@link CallRequest}. */
export type CallReply = { readonly id: number; readonly ok: true; readonly value: unknown } | { readonly id: number; readonly ok: false; readonly failure: FacadeFailure };

/** What the worker gets at start (workerData). */
export interface FacadeWorkerData {
  readonly config: GroupConfig;
  /** Int32 slots ({@link SIGNAL_REPLY}, {@link SIGNAL_REQUESTS}, the form of a synchronous answer) and a shared answer ({@link writeSharedReply}). */
  readonly signal: SharedArrayBuffer;
  readonly syncPort: MessagePort;
  readonly asyncPort: MessagePort;
}

/** Int32 slot of the signal: the id of the last synchronous call answered (-1: the group opened, or failed to). */
export const SIGNAL_REPLY = 0;
/** Int32 slot of the signal: the id of the synchronous call just posted, when the worker may take it at once (0 when not: asynchronous calls are on their way before it). */
export const SIGNAL_REQUESTS = 1;
/** Int32 slot of the signal: how the answer of the last synchronous call came (see {@link writeSharedReply}). */
const SIGNAL_FORM = 2;
/** Int32 slot of the signal: the byte length of an answer in shared memory. */
const SIGNAL_LENGTH = 3;
/** Byte offset of a number answer (a Float64). */
const NUMBER_AT = 16;
/** Byte offset of a byte answer. */
const BYTES_AT = 24;
/** Largest byte answer carried in shared memory (a signature, a MAC, a digest, a short ciphertext); longer ones take the port. */
export const SHARED_REPLY_BYTES = 4096;
/** Bytes of the signal buffer. */
export const SIGNAL_BYTES = BYTES_AT + SHARED_REPLY_BYTES;

/** How a synchronous answer came: on the sync port, or in shared memory as bytes, a number, undefined, true or false. */
const ReplyForm = { Port: 0, Bytes: 1, Number: 2, Undefined: 3, True: 4, False: 5 } as const;
type ReplyForm = (typeof ReplyForm)[keyof typeof ReplyForm];

/**
 * Writes a synchronous answer into shared memory when it is a success, small and plain
 * (bytes up to {@link SHARED_REPLY_BYTES}, a number, a boolean, undefined): the caller
 * then reads it there, with no message to post, clone and take (a tenth of a signature's
 * round trip). Call before signalling the answer's id, which publishes these writes.
 *
 * @returns false when the answer must go on the port instead
 */
export function writeSharedReply(shared: SharedArrayBuffer, signal: Int32Array, reply: CallReply): boolean {
  const form = reply.ok ? writeValue(shared, signal, reply.value) : ReplyForm.Port;
  Atomics.store(signal, SIGNAL_FORM, form);
  return form !== ReplyForm.Port;
}

/** Writes a value into shared memory if it fits there; gives its form (Port when it does not). */
function writeValue(shared: SharedArrayBuffer, signal: Int32Array, value: unknown): ReplyForm {
  if (value instanceof Uint8Array && value.byteLength <= SHARED_REPLY_BYTES) {
    new Uint8Array(shared, BYTES_AT, value.byteLength).set(value);
    signal[SIGNAL_LENGTH] = value.byteLength;
    return ReplyForm.Bytes;
  }
  if (typeof value === 'number') {
    new Float64Array(shared, NUMBER_AT, 1)[0] = value;
    return ReplyForm.Number;
  }
  if (value === undefined) return ReplyForm.Undefined;
  if (typeof value === 'boolean') return value ? ReplyForm.True : ReplyForm.False;
  return ReplyForm.Port;
}

/** Reads an answer {@link writeSharedReply} wrote (bytes are copied out); `port` when it came on the port. */
export function readSharedReply(shared: SharedArrayBuffer, signal: Int32Array): { readonly value: unknown } | 'port' {
  switch (Atomics.load(signal, SIGNAL_FORM) as ReplyForm) {
    case ReplyForm.Bytes:
      return { value: Buffer.from(new Uint8Array(shared, BYTES_AT, signal[SIGNAL_LENGTH]!)) };
    case ReplyForm.Number:
      return { value: new Float64Array(shared, NUMBER_AT, 1)[0] };
    case ReplyForm.Undefined:
      return { value: undefined };
    case ReplyForm.True:
      return { value: true };
    case ReplyForm.False:
      return { value: false };
    default:
      return 'port';
  }
}
/** How long the worker looks for the next synchronous call after answering one (ms). */
export const FOLLOW_MS = 0.2;
/** How long the worker takes synchronous calls that way before its event loop gets a turn (ms). */
export const FOLLOW_BURST_MS = 2;

/** What crosses the async port: the calls (or answers) of one turn of the sender's event loop, in one message. */
export type Batch<T> = T | readonly T[];

/** The worker's first message on the async port: the group opened, or why not. */
export type ReadyMessage = { readonly ready: true } | { readonly ready: false; readonly failure: FacadeFailure };

/**
 * Turns the Uint8Arrays a structured clone made of Buffers back into Buffers, deeply
 * (arrays and plain objects; mechanism parameters and templates nest them).
 */
export function revive(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(revive);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = revive(v);
    return out;
  }
  return value;
}

/** An 8-byte handle Buffer, as pkcs11js gives them, for a facade handle number. */
export function handleBuffer(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** The number a handle Buffer stands for (pkcs11js handles are native-endian 8-byte values). */
export function handleNumber(b: Buffer): number {
  if (b.length !== 8) return -1;
  const n = b.readBigUInt64LE();
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(n);
}
