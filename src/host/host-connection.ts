/**
 * One client connection of a member host, on any byte stream: the handshake (the shared
 * secret, checked by the host), then many requests in flight, answers written in
 * coalesced frames. The host serves a Unix socket today; a TLS server would hand its
 * sockets to the same class.
 */
import type { Duplex } from 'node:stream';
import type { Clock, TimerHandle } from '../clock/clock.js';
import type { Command } from '../pkcs11/commands.js';
import { FrameDecoder } from '../rpc/frame-decoder.js';
import { FrameWriter } from '../rpc/frame-writer.js';
import { HANDSHAKE_MAX_FRAME_BYTES, MAX_FRAME_BYTES, type HostMessage, type HostStats } from '../rpc/host-protocol.js';
import type { TokenInfo } from '../transport/transport.js';

/** What a {@link HostConnection} needs of the host it belongs to (a `MemberHost`, or a fake in tests). */
export interface ConnectionHost {
  /** The token served, sent in the welcome. */
  readonly token: TokenInfo;
  /** The time seam (the handshake timeout). */
  readonly clock: Clock;
  /** The host's heartbeat interval (ms), announced in the welcome; absent: not announced. */
  readonly heartbeatIntervalMs?: number;
  /** Constant-time comparison of a client's secret with the host's. */
  checkSecret(candidate: Uint8Array): boolean;
  /** Runs a command and answers it on `connection`. */
  run(connection: HostConnection, id: number, command: Command): void;
  /** The host's counters, the answer to a stats request. */
  stats(): HostStats;
  /** Drops a closed connection. */
  forget(connection: HostConnection): void;
}

/**
 * Answers of inline calls are written as soon as they stand for this much work (ms), not
 * only at the end of the tick: the client can send its next requests while the host works
 * on the rest of what it read (a batch of RSA signatures would otherwise be answered all
 * at once, and the host would then wait idle for the next requests). Not at every call:
 * each write wakes the client, and the client's CPU comes out of the hosts' share of a
 * machine they keep busy. 3 ms rather than 1: with two hosts signing RSA-2048 for 16
 * callers on 2 cores, the client woke about half as often and the hosts signed slightly
 * more in each of five paired runs (a difference under the noise of limit/rsa2048-sign/hosts2). The
 * wait it adds to an answer is at most 3 ms of the host's work, and none when the host has
 * nothing more queued.
 */
export const INLINE_FLUSH_MS = 3;

/** How long a connection may take to say hello before the host drops it. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Answers a client leaves unread, in bytes, beyond which the host drops it: a client that
 * stops reading must not make the host buffer its answers without end.
 */
export const MAX_UNREAD_BYTES = MAX_FRAME_BYTES;

/** One client connection of a member host: handshake first, then many requests in flight. */
export class HostConnection {
  /** Start time of each request in flight, oldest first (Map keeps insertion order). */
  readonly started = new Map<number, number>();
  readonly #socket: Duplex;
  readonly #host: ConnectionHost;
  readonly #decoder = new FrameDecoder({ maxFrameBytes: HANDSHAKE_MAX_FRAME_BYTES, buffers: 'view' });
  readonly #writer: FrameWriter;
  #authenticated = false;
  /** Inline work (ms) behind the answers queued and not yet written. */
  #inlineMs = 0;
  #handshakeTimer: TimerHandle | undefined;
  readonly #onDrop: ((reason: string) => void) | undefined;

  /** @param onDrop told once why the host drops this connection (a protocol error, a wrong secret, ...), for its log */
  constructor(socket: Duplex, host: ConnectionHost, clock: Clock, onDrop?: (reason: string) => void) {
    this.#socket = socket;
    this.#host = host;
    this.#onDrop = onDrop;
    this.#writer = new FrameWriter(socket);
    this.#handshakeTimer = clock.setTimeout(() => this.#drop(`no hello within ${HANDSHAKE_TIMEOUT_MS} ms`), HANDSHAKE_TIMEOUT_MS);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#decoder.push(chunk, (m) => this.#onMessage(m));
      } catch (error) {
        // A broken stream cannot be resynchronised: drop the connection (its client sees the close).
        this.#drop(`protocol error: ${error instanceof Error ? error.message : String(error)}`);
      }
    });
    socket.on('error', () => undefined);
    // A socket ends itself when its peer ends; any other stream may not.
    socket.on('end', () => this.destroy());
    socket.on('close', () => {
      if (this.#handshakeTimer !== undefined) clock.clearTimeout(this.#handshakeTimer);
      host.forget(this);
    });
  }

  /** True after a hello with the right secret. */
  get authenticated(): boolean {
    return this.#authenticated;
  }

  /** Queues a message; dropped when the connection is gone. */
  send(m: HostMessage): void {
    if (this.#socket.destroyed) return;
    const unread = this.#socket.writableLength;
    if (unread > MAX_UNREAD_BYTES) {
      this.#drop(`client stopped reading (${unread} bytes of answers unread)`);
      return;
    }
    this.#writer.send(m);
  }

  /** Drops the connection for `reason`, told once to `onDrop`. */
  #drop(reason: string): void {
    if (this.#socket.destroyed) return;
    this.#onDrop?.(reason);
    this.destroy();
  }

  /** Writes whatever is queued now, rather than at the end of the tick. */
  flush(): void {
    this.#inlineMs = 0;
    this.#writer.flush();
  }

  /**
   * Counts `ms` of inline work whose answer was just queued, and writes what is queued
   * once the answers waiting stand for {@link INLINE_FLUSH_MS} of work.
   */
  inlineWork(ms: number): void {
    // Only this answer queued: the earlier ones were written at the end of a tick.
    if (this.#writer.queued <= 1) this.#inlineMs = 0;
    this.#inlineMs += ms;
    if (this.#inlineMs >= INLINE_FLUSH_MS) this.flush();
  }

  /** Closes the connection now. */
  destroy(): void {
    this.#socket.destroy();
  }

  #onMessage(m: HostMessage): void {
    if (!this.#authenticated) {
      if (m.t !== 'hello' || !this.#host.checkSecret(m.secret)) {
        this.#drop(m.t !== 'hello' ? `${m.t} message before the hello` : 'wrong handshake secret');
        return;
      }
      this.#authenticated = true;
      this.#decoder.maxFrameBytes = MAX_FRAME_BYTES;
      if (this.#handshakeTimer !== undefined) this.#host.clock.clearTimeout(this.#handshakeTimer);
      this.#handshakeTimer = undefined;
      const interval = this.#host.heartbeatIntervalMs;
      this.send(interval === undefined ? { t: 'welcome', token: this.#host.token } : { t: 'welcome', token: this.#host.token, heartbeatIntervalMs: interval });
      return;
    }
    if (m.t === 'request') this.#host.run(this, m.id, m.command);
    else if (m.t === 'stats') this.send({ t: 'reply', id: m.id, ok: true, value: this.#host.stats() });
    // Anything else from a client (a second hello, a reply) breaks the protocol.
    else this.#drop(`unexpected ${m.t} message`);
  }
}
