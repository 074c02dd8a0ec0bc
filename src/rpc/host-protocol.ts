/**
 * The member-host protocol: the messages a client and a member host exchange, and their
 * encoding as length-prefixed frames on any byte stream (a Unix socket to a spawned host
 * today, a TLS socket to a remote one later). The one codec of these frames: the client
 * (`rpc-client.ts`) and the host (`src/host/`) both use it from here.
 *
 * A frame is a 4-byte big-endian body length, then the body. The body's first byte tags
 * its encoding:
 * - `0`: `v8.serialize` of a {@link HostMessage} (hello, welcome, heartbeat, stats, and
 *   every command or reply the binary forms below do not cover);
 * - `1`: a hot request (encrypt, decrypt, sign, verify, digest with no, raw-bytes or
 *   AES-GCM parameters): u32 id, then the command in the worker frame encoding
 *   (`src/transport/frame-codec.ts`), so the hot path has one binary encoding of its commands;
 * - `2`: a successful reply whose value is bytes, a boolean or nothing (every hot
 *   command, and handles): u32 id, u32 `others` (see {@link ReplyMessage}), a status
 *   byte, the bytes.
 *
 * Why not v8 for everything: `v8.serialize` calls back into JavaScript for every Buffer
 * in a message, and measured 5 µs to serialize plus 5 µs to deserialize one AES-GCM
 * command on this machine, more than SoftHSM spends on the operation (~10 µs). The binary
 * forms cost well under a microsecond each way.
 */
import { deserialize, serialize } from 'node:v8';
import type { Command, WireError } from '../pkcs11/commands.js';
import { decodeRequest, encodeRequest, isFrameCommand } from '../transport/frame-codec.js';
import type { TokenInfo } from '../transport/transport.js';
import { reviveBuffers } from '../transport/wire.js';

/** The largest frame body either side accepts or sends: a bigger one is a protocol error. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/**
 * The largest frame a host accepts before the handshake: a hello is under 100 bytes, so
 * an unauthenticated peer cannot make the host buffer megabytes.
 */
export const HANDSHAKE_MAX_FRAME_BYTES = 4096;

/** Length of the per-host secret, in bytes. */
export const SECRET_BYTES = 32;

/** The frame stream broke its rules (oversized or malformed frame, unknown message). */
export class HostProtocolError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HostProtocolError';
  }
}

/** First message on a connection, client to host: proof that the client was given the host's secret. */
export interface HelloMessage {
  readonly t: 'hello';
  readonly secret: Buffer;
}

/** The host accepted the hello; it serves the token described. */
export interface WelcomeMessage {
  readonly t: 'welcome';
  readonly token: TokenInfo;
  /** The host's heartbeat interval (ms): a client keeps a load report fresh for a few of them. Absent from older hosts. */
  readonly heartbeatIntervalMs?: number;
}

/** Run one command. `id` is an unsigned 32-bit number chosen by the client, unique among its requests in flight. */
export interface RequestMessage {
  readonly t: 'request';
  readonly id: number;
  readonly command: Command;
}

/** Ask for {@link HostStats}; answered by a {@link ReplyMessage} with the same `id`. */
export interface StatsRequestMessage {
  readonly t: 'stats';
  readonly id: number;
}

/**
 * The answer to a request or a stats request. A failure the module answered carries its
 * {@link WireError}; `unreachable` marks a failure of the host's own machinery (its
 * command threads gone), which the client reports as a member fault.
 */
export type ReplyMessage = (
  | { readonly t: 'reply'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly t: 'reply'; readonly id: number; readonly ok: false; readonly error: WireError; readonly unreachable?: boolean }
) & {
  /**
   * Commands the host had read and not answered, for all its OTHER clients, when it
   * answered (load seen across processes; the client knows its own). Absent means 0.
   */
  readonly others?: number;
};

/**
 * Sent, every heartbeat interval, to a client that has had a command pending in the host
 * longer than the interval (proof the host is alive); and, when the host serves several
 * clients, to each client whose OTHER clients keep the host busy, pending commands or
 * not, so that its load report stays fresh for an idle client, with one last `others: 0`
 * once they stop. A client may get one with nothing pending.
 */
export interface HeartbeatMessage {
  readonly t: 'heartbeat';
  /** Commands queued + running in the host, over all its connections. */
  readonly queueDepth: number;
  /** Of those, the ones of the host's other clients (see {@link ReplyMessage.others}). Absent means 0. */
  readonly others?: number;
}

/** Every message that travels on the socket. */
export type HostMessage = HelloMessage | WelcomeMessage | RequestMessage | StatsRequestMessage | ReplyMessage | HeartbeatMessage;


/** What a host reports about itself (for status and tests). */
export interface HostStats {
  /** Commands queued + running in the host now. */
  readonly queueDepth: number;
  /** Commands answered since the host started. */
  readonly served: number;
  /** Present when the host serves several clients (a remote member host): its per-client login counters. */
  readonly logins?: {
    /** User logins it let reach the token. */
    readonly tokenLogins: number;
    /** User logins it refused without the token (a PIN known to be wrong). */
    readonly refusedLogins: number;
    /** Clients logged in now. */
    readonly clientsLoggedIn: number;
  };
  /** Present when the host runs with an emulated capacity (`EmulatedCapacity`, measurements only). */
  readonly emulation?: {
    /** As configured. */
    readonly engines: number;
    /** As configured. */
    readonly serviceTimeMs: number;
    /** Engines held now. */
    readonly busy: number;
    /** The most engines held at once since the host started. */
    readonly maxBusy: number;
  };
}

// --- encoding ---------------------------------------------------------------------------

const TAG_V8 = 0;
const TAG_HOT_REQUEST = 1;
const TAG_HOT_REPLY = 2;
const REPLY_BYTES = 0;
const REPLY_TRUE = 1;
const REPLY_FALSE = 2;
const REPLY_VOID = 3;

const isU32 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;

function tooBig(bytes: number): HostProtocolError {
  return new HostProtocolError(`frame of ${bytes} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`);
}

/**
 * Appends the frame of `m` to `parts` (one or two buffers) and returns its size (for
 * `FrameWriter`, which joins many frames into one write).
 * Nothing is appended when it throws.
 * @throws HostProtocolError when the frame would exceed {@link MAX_FRAME_BYTES}
 */
export function appendFrame(m: HostMessage, parts: Buffer[]): number {
  if (m.t === 'request' && isU32(m.id) && isFrameCommand(m.command)) {
    const body = Buffer.from(encodeRequest([m.command]));
    if (body.length + 5 > MAX_FRAME_BYTES) throw tooBig(body.length + 5);
    const head = Buffer.allocUnsafe(9);
    head.writeUInt32BE(body.length + 5, 0);
    head[4] = TAG_HOT_REQUEST;
    head.writeUInt32BE(m.id, 5);
    parts.push(head, body);
    return 9 + body.length;
  }
  if (m.t === 'reply' && m.ok && isU32(m.id) && (m.others === undefined || isU32(m.others))) {
    const v = m.value;
    const others = m.others ?? 0;
    if (v instanceof Uint8Array) {
      if (v.length + 14 > MAX_FRAME_BYTES) throw tooBig(v.length + 14);
      const frame = Buffer.allocUnsafe(18 + v.length);
      frame.writeUInt32BE(14 + v.length, 0);
      frame[4] = TAG_HOT_REPLY;
      frame.writeUInt32BE(m.id, 5);
      frame.writeUInt32BE(others, 9);
      frame[13] = REPLY_BYTES;
      frame.writeUInt32BE(v.length, 14);
      frame.set(v, 18);
      parts.push(frame);
      return frame.length;
    }
    if (typeof v === 'boolean' || v === undefined) {
      const frame = Buffer.allocUnsafe(14);
      frame.writeUInt32BE(10, 0);
      frame[4] = TAG_HOT_REPLY;
      frame.writeUInt32BE(m.id, 5);
      frame.writeUInt32BE(others, 9);
      frame[13] = v === undefined ? REPLY_VOID : v ? REPLY_TRUE : REPLY_FALSE;
      parts.push(frame);
      return 14;
    }
  }
  const body = serialize(m);
  if (body.length + 1 > MAX_FRAME_BYTES) throw tooBig(body.length + 1);
  const head = Buffer.allocUnsafe(5);
  head.writeUInt32BE(body.length + 1, 0);
  head[4] = TAG_V8;
  parts.push(head, body);
  return 5 + body.length;
}

/**
 * The complete frame of one message (header included).
 * @throws HostProtocolError when it would exceed {@link MAX_FRAME_BYTES}
 */
export function encodeFrame(m: HostMessage): Buffer {
  const parts: Buffer[] = [];
  const size = appendFrame(m, parts);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
}

// --- decoding ---------------------------------------------------------------------------

/** How decoded buffers relate to the bytes they came in. */
export type BufferPolicy =
  /** Views into the received chunk: no copy (the host, whose commands live for one call). */
  | 'view'
  /** Copies: a long-lived result never pins a 64 KiB socket chunk (the client, whose results go to the application). */
  | 'copy';


const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks the shape a v8-decoded value must have; v8 gives back whatever the peer sent. */
function asHostMessage(v: unknown): HostMessage {
  if (isObject(v)) {
    switch (v['t']) {
      case 'hello':
        if (v['secret'] instanceof Uint8Array) return v as unknown as HelloMessage;
        break;
      case 'welcome':
        if (isObject(v['token']) && v['token']['slot'] instanceof Uint8Array && (v['heartbeatIntervalMs'] === undefined || (isU32(v['heartbeatIntervalMs']) && v['heartbeatIntervalMs'] > 0))) {
          return v as unknown as WelcomeMessage;
        }
        break;
      case 'request':
        if (isU32(v['id']) && isObject(v['command']) && typeof v['command']['op'] === 'string') return v as unknown as RequestMessage;
        break;
      case 'stats':
        if (isU32(v['id'])) return v as unknown as StatsRequestMessage;
        break;
      case 'reply':
        if (isU32(v['id']) && (v['others'] === undefined || isU32(v['others'])) && (v['ok'] === true || (v['ok'] === false && isObject(v['error']) && typeof v['error']['message'] === 'string'))) {
          return v as unknown as ReplyMessage;
        }
        break;
      case 'heartbeat':
        if (isU32(v['queueDepth']) && (v['others'] === undefined || isU32(v['others']))) return v as unknown as HeartbeatMessage;
        break;
    }
  }
  throw new HostProtocolError(`malformed message${isObject(v) && typeof v['t'] === 'string' ? ` of type ${JSON.stringify(v['t'].slice(0, 40))}` : ''}`);
}

/**
 * The message in one frame's body (the bytes after its length).
 * @throws HostProtocolError on a malformed body
 */
export function decodeBody(body: Buffer, policy: BufferPolicy): HostMessage {
  if (body.length < 1) throw new HostProtocolError('empty frame');
  const tag = body[0];
  try {
    if (tag === TAG_V8) {
      const value = deserialize(body.subarray(1));
      return asHostMessage(reviveBuffers(value, policy === 'copy'));
    }
    if (tag === TAG_HOT_REQUEST) {
      const id = body.readUInt32BE(1);
      // decodeRequest reads a whole ArrayBuffer from offset 0; this copy also frees the
      // command from the socket chunk it arrived in.
      const frame = new ArrayBuffer(body.length - 5);
      new Uint8Array(frame).set(body.subarray(5));
      const decoded = decodeRequest(frame);
      const c = decoded[0];
      if (decoded.length !== 1 || c === undefined) throw new HostProtocolError(`hot request with ${decoded.length} commands`);
      let command: Command;
      if (c.op === 'digest') command = { op: 'digest', session: c.session, mechanism: c.mechanism, data: c.data };
      else if (c.op === 'verify') command = { op: 'verify', session: c.session, key: c.key, mechanism: c.mechanism, data: c.data, signature: c.signature ?? Buffer.alloc(0) };
      else command = { op: c.op, session: c.session, key: c.key, mechanism: c.mechanism, data: c.data };
      return { t: 'request', id, command };
    }
    if (tag === TAG_HOT_REPLY) {
      const id = body.readUInt32BE(1);
      const others = body.readUInt32BE(5);
      const status = body[9];
      // `others` only when there are some: a lone client's replies keep their plain shape.
      const reply = (value: unknown): ReplyMessage => (others === 0 ? { t: 'reply', id, ok: true, value } : { t: 'reply', id, ok: true, value, others });
      if (status === REPLY_BYTES) {
        const n = body.readUInt32BE(10);
        if (n !== body.length - 14) throw new HostProtocolError(`reply of ${n} bytes in a frame of ${body.length}`);
        const view = body.subarray(14);
        return reply(policy === 'copy' ? Buffer.from(view) : view);
      }
      if (body.length !== 10) throw new HostProtocolError(`reply frame of ${body.length} bytes for status ${String(status)}`);
      if (status === REPLY_TRUE) return reply(true);
      if (status === REPLY_FALSE) return reply(false);
      if (status === REPLY_VOID) return reply(undefined);
      throw new HostProtocolError(`unknown reply status ${String(status)}`);
    }
  } catch (error) {
    if (error instanceof HostProtocolError) throw error;
    // v8.deserialize and the frame decoder throw plain errors on truncated or bad input.
    throw new HostProtocolError(`undecodable frame: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  throw new HostProtocolError(`unknown frame tag ${String(tag)}`);
}
