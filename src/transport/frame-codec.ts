/**
 * The fast path between the main thread and a command worker: a batch of hot commands
 * (encrypt, decrypt, sign, verify, digest) as ONE flat binary frame, transferred (not
 * copied) both ways. Structured clone of nested command objects cost ~3 µs per command
 * to send and as much to receive; a frame costs a few hundred nanoseconds. The worker
 * writes outputs straight into the reply frame.
 *
 * Commands whose mechanism parameter is not none, raw bytes or AES-GCM, and every other
 * command, take the object path (`worker-protocol.ts`).
 */
import type { Mechanism } from 'pkcs11js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { Command, WireError } from '../pkcs11/commands.js';

/** The commands the frame carries. */
export type FrameCommand = Extract<Command, { op: 'encrypt' | 'decrypt' | 'sign' | 'verify' | 'digest' }>;

const OPS = ['encrypt', 'decrypt', 'sign', 'verify', 'digest'] as const;
const OP_CODE: Record<FrameCommand['op'], number> = { encrypt: 0, decrypt: 1, sign: 2, verify: 3, digest: 4 };
const PARAM_NONE = 0;
const PARAM_BYTES = 1;
const PARAM_GCM = 2;
const HANDLE = 8;
/** Room for an output beyond the input: a GCM tag, a CBC pad block, an RSA-8192 signature. */
const SLACK = 1024;

interface GcmParameter {
  type: number;
  iv: Uint8Array;
  aad?: Uint8Array;
  tagBits: number;
}

const isU32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

function paramKind(m: Mechanism): number | undefined {
  if (!isU32(m.mechanism)) return undefined;
  const p = m.parameter as unknown;
  if (p === undefined || p === null) return PARAM_NONE;
  if (p instanceof Uint8Array) return PARAM_BYTES;
  if (typeof p === 'object' && (p as { type?: unknown }).type === pkcs11js.CK_PARAMS_GCM) {
    // Only a well-formed GCM parameter takes the frame; anything else goes the object way,
    // where pkcs11js rejects it as the caller's error.
    const g = p as Partial<GcmParameter>;
    if (g.iv instanceof Uint8Array && (g.aad === undefined || g.aad instanceof Uint8Array) && isU32(g.tagBits)) return PARAM_GCM;
  }
  return undefined;
}

/** True when the command can travel in a frame. */
export function isFrameCommand(c: Command): c is FrameCommand {
  return (c.op === 'encrypt' || c.op === 'decrypt' || c.op === 'sign' || c.op === 'verify' || c.op === 'digest') && paramKind(c.mechanism) !== undefined;
}

function paramSize(m: Mechanism): number {
  const kind = paramKind(m);
  if (kind === PARAM_BYTES) return 4 + (m.parameter as Uint8Array).length;
  if (kind === PARAM_GCM) {
    const g = m.parameter as unknown as GcmParameter;
    return 4 + g.iv.length + 4 + (g.aad?.length ?? 0) + 4;
  }
  return 0;
}

/** Encodes a batch of frame commands into one ArrayBuffer. */
export function encodeRequest(commands: readonly FrameCommand[]): ArrayBuffer {
  let size = 4;
  for (const c of commands) {
    size += 1 + HANDLE + HANDLE + 4 + 1 + paramSize(c.mechanism) + 4 + c.data.length + (c.op === 'verify' ? 4 + c.signature.length : 0);
  }
  const buf = Buffer.from(new ArrayBuffer(size));
  let o = buf.writeUInt32LE(commands.length, 0);
  const bytes = (b: Uint8Array): void => {
    o = buf.writeUInt32LE(b.length, o);
    buf.set(b, o);
    o += b.length;
  };
  for (const c of commands) {
    o = buf.writeUInt8(OP_CODE[c.op], o);
    buf.set(c.session, o);
    o += HANDLE;
    if (c.op !== 'digest') buf.set(c.key, o);
    o += HANDLE;
    o = buf.writeUInt32LE(c.mechanism.mechanism, o);
    const kind = paramKind(c.mechanism)!;
    o = buf.writeUInt8(kind, o);
    if (kind === PARAM_BYTES) bytes(c.mechanism.parameter as Uint8Array);
    else if (kind === PARAM_GCM) {
      const g = c.mechanism.parameter as unknown as GcmParameter;
      bytes(g.iv);
      bytes(g.aad ?? new Uint8Array(0));
      o = buf.writeUInt32LE(g.tagBits, o);
    }
    bytes(c.data);
    if (c.op === 'verify') bytes(c.signature);
  }
  return buf.buffer as ArrayBuffer;
}

/** One decoded request, with views into the frame (no copies). */
export interface DecodedCommand {
  readonly op: FrameCommand['op'];
  readonly session: Buffer;
  readonly key: Buffer;
  readonly mechanism: Mechanism;
  readonly data: Buffer;
  readonly signature: Buffer | undefined;
}

/** Decodes a request frame (worker side). */
export function decodeRequest(frame: ArrayBuffer): DecodedCommand[] {
  const buf = Buffer.from(frame);
  let o = 0;
  const count = buf.readUInt32LE(o);
  o += 4;
  const view = (n: number): Buffer => {
    const b = buf.subarray(o, o + n);
    o += n;
    return b;
  };
  const bytes = (): Buffer => {
    const n = buf.readUInt32LE(o);
    o += 4;
    return view(n);
  };
  const out: DecodedCommand[] = [];
  for (let i = 0; i < count; i++) {
    const op = OPS[buf.readUInt8(o++)]!;
    const session = view(HANDLE);
    const key = view(HANDLE);
    const mechanism: Mechanism = { mechanism: buf.readUInt32LE(o) };
    o += 4;
    const kind = buf.readUInt8(o++);
    if (kind === PARAM_BYTES) mechanism.parameter = bytes();
    else if (kind === PARAM_GCM) {
      const iv = bytes();
      const aad = bytes();
      const tagBits = buf.readUInt32LE(o);
      o += 4;
      const parameter = { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: iv.length * 8, tagBits, ...(aad.length > 0 ? { aad } : {}) };
      mechanism.parameter = parameter as unknown as Mechanism['parameter'];
    }
    const data = bytes();
    const signature = op === 'verify' ? bytes() : undefined;
    out.push({ op, session, key, mechanism, data, signature });
  }
  return out;
}

const STATUS_BYTES = 0;
const STATUS_BOOL = 1;
const STATUS_ERROR = 2;

/** Writes results into a reply frame as the worker produces them. */
export class ReplyWriter {
  readonly #buf: Buffer;
  #o = 0;

  /** Sized for the worst case of `commands`' outputs. */
  constructor(commands: readonly DecodedCommand[]) {
    let size = 0;
    for (const c of commands) size += 1 + 4 + (c.op === 'encrypt' || c.op === 'decrypt' ? c.data.length + SLACK : SLACK) + 64;
    this.#buf = Buffer.from(new ArrayBuffer(size));
  }

  /** Space for an output of up to `max` bytes; then call {@link bytesWritten} with the result. */
  outputSpace(command: DecodedCommand): Buffer {
    const max = command.op === 'encrypt' || command.op === 'decrypt' ? command.data.length + SLACK : SLACK;
    return this.#buf.subarray(this.#o + 5, this.#o + 5 + max);
  }

  /** Records an output that pkcs11js wrote into {@link outputSpace} (it returns a view of it). */
  bytesWritten(output: Buffer): void {
    this.#buf.writeUInt8(STATUS_BYTES, this.#o);
    this.#buf.writeUInt32LE(output.length, this.#o + 1);
    this.#o += 5 + output.length;
  }

  /** Records a boolean result (verify). */
  bool(value: boolean): void {
    this.#o = this.#buf.writeUInt8(STATUS_BOOL, this.#o);
    this.#o = this.#buf.writeUInt8(value ? 1 : 0, this.#o);
  }

  /** Records a failure. */
  error(e: WireError): void {
    this.#o = this.#buf.writeUInt8(STATUS_ERROR, this.#o);
    this.#o = this.#buf.writeUInt32LE(e.rv ?? 0xffffffff, this.#o);
    const fn = Buffer.from(e.fn ?? '');
    const msg = Buffer.from(e.message.slice(0, 200));
    this.#o = this.#buf.writeUInt16LE(fn.length, this.#o);
    this.#o += fn.copy(this.#buf, this.#o);
    this.#o = this.#buf.writeUInt16LE(msg.length, this.#o);
    this.#o += msg.copy(this.#buf, this.#o);
  }

  /** The finished frame and its used length. */
  finish(): { frame: ArrayBuffer; length: number } {
    return { frame: this.#buf.buffer as ArrayBuffer, length: this.#o };
  }
}

/** One decoded reply. */
export type ReplyOutcome = { readonly ok: true; readonly value: Buffer | boolean } | { readonly ok: false; readonly error: WireError };

/** Decodes a reply frame (main thread). Outputs are copied out so no result pins the frame. */
export function decodeReply(frame: ArrayBuffer, length: number, count: number): ReplyOutcome[] {
  const buf = Buffer.from(frame, 0, length);
  const out: ReplyOutcome[] = [];
  let o = 0;
  for (let i = 0; i < count; i++) {
    const status = buf.readUInt8(o++);
    if (status === STATUS_BYTES) {
      const n = buf.readUInt32LE(o);
      o += 4;
      const value = Buffer.allocUnsafe(n);
      buf.copy(value, 0, o, o + n);
      o += n;
      out.push({ ok: true, value });
    } else if (status === STATUS_BOOL) {
      out.push({ ok: true, value: buf.readUInt8(o++) === 1 });
    } else {
      const rv = buf.readUInt32LE(o);
      o += 4;
      const fnLen = buf.readUInt16LE(o);
      o += 2;
      const fn = buf.toString('utf8', o, o + fnLen);
      o += fnLen;
      const msgLen = buf.readUInt16LE(o);
      o += 2;
      const message = buf.toString('utf8', o, o + msgLen);
      o += msgLen;
      out.push({ ok: false, error: { ...(rv === 0xffffffff ? {} : { rv }), ...(fn ? { fn } : {}), message } });
    }
  }
  return out;
}
