/**
 * The client side of the member-host protocol over any duplex byte stream: the handshake
 * with the host's shared secret, request ids with many requests in flight, writes
 * coalesced per tick, heartbeats told to the listeners (the member's deadlines are fed
 * from them), and a dropped stream failing everything in flight at once.
 *
 * It knows nothing of where the stream comes from: `HostTransport` (`src/host/`) spawns a
 * member host and hands this client a connect function that opens the host's Unix
 * socket; a remote member host is reached by handing it one that opens a TLS socket.
 */
import type { Duplex } from 'node:stream';
import { systemClock, type Clock } from '../clock/clock.js';
import { ConfigError, HaError, MemberUnreachableError } from '../errors/ha-error.js';
import type { Command, CommandName, CommandResult } from '../pkcs11/commands.js';
import { CommandFailedError, type TokenInfo, type Transport } from '../transport/transport.js';
import { FrameDecoder } from './frame-decoder.js';
import { FrameWriter } from './frame-writer.js';
import { HostProtocolError, type HostMessage, type HostStats } from './host-protocol.js';

/** Options of an {@link RpcClient}. */
export interface RpcClientOptions {
  /** The member's name, in every error this client raises. */
  readonly member: string;
  /**
   * Opens the byte stream to the member host; called once, by `connect()`. The stream
   * must deliver Buffers (no encoding set); writes before it is connected are buffered by
   * the stream, as a socket's and a TLS socket's are.
   */
  readonly connect: () => Duplex | Promise<Duplex>;
  /**
   * The host's shared secret, proved in the hello. A function is called once, right
   * before the hello; the client keeps no reference to the bytes once the hello's frame is
   * built, so the caller may zero them as soon as `connect()` settles.
   */
  readonly secret: Uint8Array | (() => Uint8Array);
  /** This transport's kind, as {@link Transport.kind} reports it. @default 'rpc' */
  readonly kind?: string;
  /**
   * Longest wait from `connect()` until the host's welcome. Unset, there is none: the
   * caller's own deadline covers the handshake (as `HostTransport`'s start timeout does).
   */
  readonly connectTimeoutMs?: number;
  /** The time seam (the connect timeout, the age of the host's load report). @default systemClock */
  readonly clock?: Clock;
  /**
   * Whether {@link RpcClient.hostLoad} reports what the host says its OTHER clients keep
   * it busy with (in every answer and heartbeat); off, it stays 0. On for a remote member
   * host that serves several application processes. @default false
   */
  readonly countHostLoad?: boolean;
  /**
   * How long a load report counts once received (ms): a host no longer heard from is not
   * kept busy by an old report. A busy host repeats its report to every client on each
   * heartbeat, so this must be longer than its heartbeat interval.
   * @default 3 heartbeat intervals of the host, as its welcome announces it (3000 when it announces none)
   */
  readonly hostLoadTtlMs?: number;
  /**
   * The member's deadline (a command with no answer and no heartbeat for this long fails
   * it), to check against the heartbeat interval the host's welcome announces: a deadline
   * under 3 intervals would fail the member under a long command before its heartbeats
   * come (the rule `heartbeatIntervalMs` follows for local hosts). Unset, nothing is checked.
   */
  readonly deadlineMs?: number;
}

type State = 'new' | 'connecting' | 'ready' | 'lost' | 'closed';

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  /** False for the client's own requests (stats), which `pending` does not count. */
  readonly command: boolean;
}

/**
 * Runs a member's commands in a member host reached over a byte stream.
 *
 * A stream that closes, or breaks the protocol, fails the client at once: pending
 * commands reject with {@link MemberUnreachableError} and the disconnect listeners are
 * told once. A reconnection takes a fresh client.
 *
 * TLS plugs in here and nowhere else: give `connect` a function that returns
 * `tls.connect({ host, port, ca, cert, key })` and `secret` the remote host's shared
 * secret; the spawning code of `src/host/` is not involved.
 *
 * @example
 * // A member host listening on a Unix socket (HostTransport does this for its own host).
 * const client = new RpcClient({ member: 'hsm-a', connect: () => createConnection(socketPath), secret });
 * const token = await client.connect();
 * client.onHeartbeat((depth) => console.log('host alive, queue depth', depth));
 * const signature = await client.execute({ op: 'sign', session, key, mechanism, data });
 */
export class RpcClient implements Transport {
  /** This transport's kind, `rpc` unless the options name another. */
  readonly kind: string;
  readonly #member: string;
  readonly #openStream: () => Duplex | Promise<Duplex>;
  readonly #secret: Uint8Array | (() => Uint8Array);
  readonly #connectTimeoutMs: number | undefined;
  readonly #clock: Clock;
  readonly #countHostLoad: boolean;
  readonly #hostLoadTtlMs: number | undefined;
  readonly #deadlineMs: number | undefined;
  /** The heartbeat interval the host announced in its welcome. */
  #hostHeartbeatMs = 1000;
  /** The host's last report of its other clients' commands, and when it came. */
  #others = 0;
  #othersAt = 0;
  #state: State = 'new';
  #stream: Duplex | undefined;
  /** The last error the stream reported: the cause of the loss its 'close' then tells. */
  #streamError: Error | undefined;
  #writer: FrameWriter | undefined;
  readonly #decoder = new FrameDecoder({ buffers: 'copy' });
  readonly #pending = new Map<number, Pending>();
  #commands = 0;
  #nextId = 1;
  #lost: MemberUnreachableError | undefined;
  /** Fails a `connect()` in progress; set only while connecting. */
  #connectFailed: ((error: Error) => void) | undefined;
  #onWelcome: ((token: TokenInfo) => void) | undefined;
  readonly #disconnectListeners: ((error: Error) => void)[] = [];
  readonly #heartbeatListeners: ((queueDepth: number) => void)[] = [];

  /** @throws {@link RangeError} when `connectTimeoutMs` is not a positive number (the value is echoed) */
  constructor(options: RpcClientOptions) {
    const timeout = options.connectTimeoutMs;
    if (timeout !== undefined && (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0)) {
      throw new RangeError(`connectTimeoutMs must be a positive number of milliseconds, got ${String(timeout)}`);
    }
    this.kind = options.kind ?? 'rpc';
    this.#member = options.member;
    this.#openStream = options.connect;
    this.#secret = options.secret;
    this.#connectTimeoutMs = timeout;
    this.#clock = options.clock ?? systemClock;
    this.#countHostLoad = options.countHostLoad === true;
    this.#hostLoadTtlMs = options.hostLoadTtlMs;
    this.#deadlineMs = options.deadlineMs;
  }

  /**
   * Commands the host had read and not answered for its other clients at its last report
   * (an answer or a heartbeat), while that report is fresh; 0 unless `countHostLoad`.
   * The least-busy scheduler adds it to the member's own outstanding commands.
   */
  get hostLoad(): number {
    if (this.#others === 0) return 0;
    const ttl = this.#hostLoadTtlMs ?? 3 * this.#hostHeartbeatMs;
    return this.#clock.now() - this.#othersAt > ttl ? 0 : this.#others;
  }

  #noteLoad(others: number): void {
    this.#others = others;
    if (others !== 0) this.#othersAt = this.#clock.now();
  }

  /** Commands sent and not yet answered. */
  get pending(): number {
    return this.#commands;
  }

  /**
   * Opens the stream, proves the secret and waits for the host's welcome. Once per
   * instance.
   * @throws {@link MemberUnreachableError} when the stream cannot be opened, closes or
   *   breaks the protocol before the welcome (a wrong secret: the host just closes), the
   *   connect timeout passes, or the client is closed meanwhile; {@link ConfigError} when
   *   `deadlineMs` is under 3 heartbeat intervals of the host
   */
  async connect(): Promise<TokenInfo> {
    if (this.#state !== 'new') throw this.#unavailable(this.#state === 'closed' ? 'transport closed' : 'connect() was called already');
    this.#state = 'connecting';
    const failed = new Promise<never>((_, reject) => {
      this.#connectFailed = reject;
    });
    const ms = this.#connectTimeoutMs;
    const timer = ms === undefined ? undefined : this.#clock.setTimeout(() => this.#connectFailed?.(this.#unavailable(`no welcome from the member host within ${ms} ms`)), ms);
    const opening = this.#open();
    // Whichever loses the race must not become an unhandled rejection.
    opening.catch(() => undefined);
    try {
      const token = await Promise.race([opening, failed]);
      if (this.#state !== 'connecting') throw this.#unavailable('transport closed while connecting');
      this.#state = 'ready';
      return token;
    } catch (error) {
      if (this.#state === 'connecting') this.#state = 'closed';
      this.#stream?.destroy();
      throw error;
    } finally {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
      this.#connectFailed = undefined;
      this.#onWelcome = undefined;
    }
  }

  async #open(): Promise<TokenInfo> {
    let stream: Duplex;
    try {
      stream = await this.#openStream();
    } catch (error) {
      if (HaError.is(error)) throw error;
      throw new MemberUnreachableError(this.#member, `cannot reach the member host: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    if (this.#state !== 'connecting') {
      stream.destroy();
      throw this.#unavailable('transport closed while connecting');
    }
    this.#stream = stream;
    this.#writer = new FrameWriter(stream);
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('error', (error: Error) => {
      // 'close' follows and tells what matters.
      this.#streamError = error;
    });
    // A socket closes itself once its peer ends; any other stream may only end.
    stream.on('end', () => this.#onClose());
    stream.on('close', () => this.#onClose());
    const welcome = new Promise<TokenInfo>((resolve) => {
      this.#onWelcome = resolve;
    });
    const secret = typeof this.#secret === 'function' ? this.#secret() : this.#secret;
    // The frame is built here, synchronously: the caller may zero the secret after.
    this.#writer.send({ t: 'hello', secret: Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength) });
    return await welcome;
  }

  #onClose(): void {
    // The stream's error says why (a TLS certificate the client refused, for one).
    const why = this.#streamError === undefined ? '' : `: ${this.#streamError.message}`;
    if (this.#state === 'connecting') this.#connectFailed?.(this.#unavailable(`member host closed the connection during the handshake${why}`));
    else this.#lose('connection to the member host closed');
  }

  #onData(chunk: Buffer): void {
    try {
      this.#decoder.push(chunk, (m) => this.#dispatch(m));
    } catch (error) {
      const reason = `protocol error: ${error instanceof Error ? error.message : String(error)}`;
      if (this.#state === 'connecting') this.#connectFailed?.(this.#unavailable(reason));
      else this.#lose(reason);
      this.#stream?.destroy();
    }
  }

  #dispatch(m: HostMessage): void {
    if (m.t === 'reply') {
      if (this.#countHostLoad) this.#noteLoad(m.others ?? 0);
      const p = this.#pending.get(m.id);
      if (p === undefined) return;
      this.#pending.delete(m.id);
      if (p.command) this.#commands--;
      if (m.ok) p.resolve(m.value);
      else p.reject(m.unreachable === true ? this.#unavailable(m.error.message) : new CommandFailedError(m.error));
    } else if (m.t === 'heartbeat') {
      if (this.#countHostLoad) this.#noteLoad(m.others ?? 0);
      for (const listener of this.#heartbeatListeners) {
        try {
          listener(m.queueDepth);
        } catch (error) {
          // A listener's bug must not be taken for a broken stream; surface it on its own.
          queueMicrotask(() => {
            throw error;
          });
        }
      }
    } else if (m.t === 'welcome' && this.#onWelcome !== undefined) {
      const interval = m.heartbeatIntervalMs;
      if (interval !== undefined && this.#deadlineMs !== undefined && this.#deadlineMs < 3 * interval) {
        this.#connectFailed?.(
          new ConfigError(
            'deadlineMs',
            `member ${this.#member}: ${this.#deadlineMs} ms is under 3 heartbeat intervals of its member host (${interval} ms each): a long command would fail the member before its heartbeats come; raise deadlineMs to at least ${3 * interval} or lower the host's heartbeatIntervalMs`,
          ),
        );
        return;
      }
      if (interval !== undefined) this.#hostHeartbeatMs = interval;
      this.#onWelcome(m.token);
      this.#onWelcome = undefined;
    } else {
      throw new HostProtocolError(`unexpected ${m.t} message from the host`);
    }
  }

  #nextRequestId(): number {
    const id = this.#nextId;
    this.#nextId = id === 0xffffffff ? 1 : id + 1;
    return id;
  }

  #unavailable(reason: string, unsent = false): MemberUnreachableError {
    const cause = this.#streamError;
    return new MemberUnreachableError(this.#member, reason, cause === undefined ? { unsent } : { unsent, cause });
  }

  /** Why a command cannot be sent now (it never leaves this process). */
  #notReady(): MemberUnreachableError {
    if (this.#state === 'lost' && this.#lost !== undefined) return this.#unavailable(this.#lost.message.replace(/^member [^:]*: /, ''), true);
    return this.#unavailable(this.#state === 'closed' ? 'transport closed' : 'not connected', true);
  }

  /**
   * Sends one command to the host; many may be in flight.
   * @throws {@link CommandFailedError} when the module answered with an error (or the
   *   command cannot be sent: too big, not serializable); {@link MemberUnreachableError}
   *   when the host is gone or the client closed
   */
  execute<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    if (this.#state !== 'ready') return Promise.reject(this.#notReady());
    const id = this.#nextRequestId();
    return new Promise<CommandResult<N>>((resolve, reject) => {
      try {
        this.#writer!.send({ t: 'request', id, command });
      } catch (error) {
        // Never sent (too big for a frame, or not serializable): the caller's error, the member is fine.
        const kind = error instanceof HostProtocolError ? 'RangeError' : 'TypeError';
        reject(new CommandFailedError({ message: `${kind}: ${error instanceof Error ? error.message : String(error)}` }));
        return;
      }
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject, command: true });
      this.#commands++;
    });
  }

  /**
   * Asks the host for its counters (queue depth, commands served and, with emulation,
   * the engines busy now and the most busy at once).
   * @throws {@link MemberUnreachableError} when the host is not reachable
   */
  hostStats(): Promise<HostStats> {
    if (this.#state !== 'ready') return Promise.reject(this.#notReady());
    const id = this.#nextRequestId();
    return new Promise<HostStats>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject, command: false });
      this.#writer!.send({ t: 'stats', id });
    });
  }

  /** `listener` is told once, with a {@link MemberUnreachableError}, when the connection drops or {@link fail} is called (never on `close()`). */
  onDisconnect(listener: (error: Error) => void): void {
    this.#disconnectListeners.push(listener);
  }

  /**
   * @param listener gets the queue depth the host reports (commands queued + running
   *   there); a host serving several clients also sends them with nothing pending here
   */
  onHeartbeat(listener: (queueDepth: number) => void): void {
    this.#heartbeatListeners.push(listener);
  }

  /**
   * Fails the connection for a reason its stream has not shown yet (the owner saw the
   * host process exit): a `connect()` in progress rejects, a ready client is lost as if
   * the stream had dropped. Nothing happens once lost or closed.
   */
  fail(reason: string): void {
    if (this.#state === 'connecting') this.#connectFailed?.(this.#unavailable(reason));
    else this.#lose(reason);
  }

  #rejectAll(error: MemberUnreachableError): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#commands = 0;
    for (const p of pending) p.reject(error);
  }

  /** The connection dropped on its own: fail everything at once, tell the listeners once, let the stream go. */
  #lose(reason: string): void {
    if (this.#state !== 'ready') return;
    this.#state = 'lost';
    const error = this.#unavailable(reason);
    this.#lost = error;
    this.#rejectAll(error);
    for (const listener of this.#disconnectListeners.splice(0)) listener(error);
    this.#stream?.destroy();
  }

  /**
   * Rejects pending commands (and a `connect()` in progress) and destroys the stream: the
   * host sees its client gone. Idempotent; the disconnect listeners are not told.
   */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    const connecting = this.#state === 'connecting';
    this.#state = 'closed';
    this.#rejectAll(this.#unavailable('transport closed'));
    if (connecting) this.#connectFailed?.(this.#unavailable('transport closed while connecting'));
    this.#stream?.destroy();
  }
}
