/**
 * A member's module in its own child process (a member host), reached over a Unix
 * socket. Unlike worker threads, a process isolates a crash or a hang of the module: the
 * application sees the member fail, and goes on.
 *
 * Two parts joined: {@link HostProcess} spawns and supervises the host (private socket
 * directory, secret over IPC, exit, stop), and {@link RpcClient} carries the commands
 * over the host's socket (framing, request ids, heartbeats). A remote member host would
 * take an RpcClient over TLS and no HostProcess.
 */
import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { systemClock, type Clock } from '../clock/clock.js';
import { ConfigError, MemberUnreachableError } from '../errors/ha-error.js';
import type { Command, CommandName, CommandResult } from '../pkcs11/commands.js';
import { SECRET_BYTES, type HostStats } from '../rpc/host-protocol.js';
import { RpcClient } from '../rpc/rpc-client.js';
import type { InProcessTransportOptions } from '../transport/in-process-transport.js';
import type { TokenInfo, Transport } from '../transport/transport.js';
import type { EmulatedCapacity, HostCalls } from './host-ipc.js';
import { HostProcess } from './host-process.js';

export type { HostStats } from '../rpc/host-protocol.js';
export type { EmulatedCapacity } from './host-ipc.js';

/** Options of a {@link HostTransport}: those of the in-process transport (used inside the host), and the host's own. */
export interface HostTransportOptions extends InProcessTransportOptions {
  /**
   * While a command has been pending in the host this long, the host sends a heartbeat
   * every interval (the first one to two intervals after the command started).
   * @default 1000
   */
  readonly heartbeatIntervalMs?: number;
  /**
   * EMULATION, for measurements only: the host runs each command through `engines`
   * parallel slots, each held at least `serviceTimeMs` from the command's start, so the
   * member behaves like a network HSM of fixed capacity. Off by default.
   */
  readonly emulate?: EmulatedCapacity;
  /**
   * Where the host makes short cryptographic calls (encrypt, decrypt, sign, verify,
   * digest): `'inline'` on its main thread, `'threads'` on its worker threads. See
   * `GroupConfig.hostCalls`. @default 'inline'
   */
  readonly calls?: HostCalls;
  /** Longest wait for the host to start, load the module and answer the handshake. @default 30000 */
  readonly startTimeoutMs?: number;
  /** How long `close()` lets the host stop after SIGTERM before it sends SIGKILL. @default 2000 */
  readonly closeTimeoutMs?: number;
  /** The time seam. @default systemClock */
  readonly clock?: Clock;
  /** Told each line the host writes to its stderr (the group hands it to its logger). @default none */
  readonly onStderr?: ((line: string) => void) | undefined;
}

function positive(value: number | undefined, fallback: number, path: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(path, `must be a positive number of milliseconds, got ${String(value)}`);
  }
  return value;
}

/**
 * Runs a member's commands in a member host process over a Unix socket.
 *
 * A host exit or a socket close fails the transport at once: pending commands reject with
 * {@link MemberUnreachableError} and the disconnect listeners are told once.
 *
 * @example
 * const transport = new HostTransport({
 *   member: 'hsm-a', modulePath: '/usr/lib/softhsm/libsofthsm2.so',
 *   moduleEnv: { SOFTHSM2_CONF: '/etc/hsm-a/softhsm2.conf' }, token: { label: 'hsm-a' },
 *   threads: 2, configPath: 'members[0]', heartbeatIntervalMs: 500,
 * });
 * const token = await transport.connect();
 * transport.onHeartbeat((depth) => console.log('host alive, queue depth', depth));
 */
export class HostTransport implements Transport {
  /** This transport's kind, `host`. */
  readonly kind = 'host';
  readonly #member: string;
  readonly #clock: Clock;
  readonly #startTimeoutMs: number;
  readonly #process: HostProcess;
  readonly #client: RpcClient;
  #phase: 'new' | 'connecting' | 'connected' | 'closed' = 'new';
  /** Stop the host with SIGKILL at once (it failed). */
  #force = false;
  /** The host's secret, while connecting only. */
  #secret: Buffer | undefined;
  #teardownDone: Promise<void> | undefined;
  /** Fails a `connect()` in progress; set only while connecting. */
  #startFailed: ((error: Error) => void) | undefined;
  readonly #disconnectListeners: ((error: Error) => void)[] = [];

  /** @throws {@link ConfigError} on an invalid option (the value is echoed) */
  constructor(options: HostTransportOptions) {
    this.#member = options.member;
    this.#clock = options.clock ?? systemClock;
    const at = (name: string): string => `${options.configPath}.${name}`;
    const heartbeatIntervalMs = positive(options.heartbeatIntervalMs, 1000, at('heartbeatIntervalMs'));
    this.#startTimeoutMs = positive(options.startTimeoutMs, 30_000, at('startTimeoutMs'));
    const closeTimeoutMs = positive(options.closeTimeoutMs, 2000, at('closeTimeoutMs'));
    if (options.calls !== undefined && options.calls !== 'inline' && options.calls !== 'threads') {
      throw new ConfigError(at('calls'), `must be 'inline' or 'threads', got ${String(options.calls)}`);
    }
    const e = options.emulate;
    if (e !== undefined) {
      if (!Number.isInteger(e.engines) || e.engines < 1) throw new ConfigError(at('emulate.engines'), `must be a positive integer, got ${String(e.engines)}`);
      if (typeof e.serviceTimeMs !== 'number' || !Number.isFinite(e.serviceTimeMs) || e.serviceTimeMs < 0) {
        throw new ConfigError(at('emulate.serviceTimeMs'), `must be a number of milliseconds >= 0, got ${String(e.serviceTimeMs)}`);
      }
    }
    const o = options;
    this.#process = new HostProcess({
      // Plain data picked field by field: it travels over IPC (the clock, for one, cannot).
      config: {
        member: o.member,
        modulePath: o.modulePath,
        moduleEnv: o.moduleEnv,
        token: o.token,
        threads: o.threads,
        configPath: o.configPath,
        heartbeatIntervalMs,
        calls: o.calls ?? 'inline',
        ...(e === undefined ? {} : { emulate: { engines: e.engines, serviceTimeMs: e.serviceTimeMs } }),
      },
      closeTimeoutMs,
      clock: this.#clock,
      onStderr: o.onStderr,
    });
    this.#client = new RpcClient({
      member: o.member,
      kind: 'host',
      connect: () => createConnection(this.#process.socketPath!),
      secret: () => this.#secret!,
    });
    // The socket closes too when the host exits, but the exit says more (and comes first or not).
    this.#process.onExit((how) => {
      this.#client.fail(this.#phase === 'connecting' ? `member host exited while starting (${how})${this.#process.stderrHint()}` : `member host exited (${how})`);
    });
    this.#client.onDisconnect((error) => {
      for (const listener of this.#disconnectListeners.splice(0)) listener(error);
      // After the listeners: one of them may close with force, and that decides the stop.
      void this.#teardown();
    });
  }

  /** Process id of the member host, once spawned (for diagnostics, and tests that kill it). */
  get pid(): number | undefined {
    return this.#process.pid;
  }

  /** Path of the host's Unix socket, once chosen (inside a private 0700 directory). */
  get socketPath(): string | undefined {
    return this.#process.socketPath;
  }

  /** Commands sent and not yet answered. */
  get pending(): number {
    return this.#client.pending;
  }

  /**
   * Starts the member host, waits until it has loaded the module and found the token,
   * connects and authenticates. Once per instance: a reconnection takes a fresh
   * HostTransport (a fresh host process), as the group's `newTransport` gives.
   * @throws {@link MemberUnreachableError} when the host does not start in time, exits, or
   *   finds no such token (with the in-process transport's message); {@link ConfigError}
   *   when the module cannot be loaded
   */
  async connect(): Promise<TokenInfo> {
    if (this.#phase !== 'new') throw this.#unavailable(this.#phase === 'closed' ? 'transport closed' : 'connect() was called already');
    this.#phase = 'connecting';
    const failed = new Promise<never>((_, reject) => {
      this.#startFailed = reject;
    });
    const timer = this.#clock.setTimeout(
      () => this.#startFailed?.(this.#unavailable(`member host did not start within ${this.#startTimeoutMs} ms${this.#process.stderrHint()}`)),
      this.#startTimeoutMs,
    );
    const starting = this.#start();
    // Whichever loses the race must not become an unhandled rejection.
    starting.catch(() => undefined);
    try {
      const token = await Promise.race([starting, failed]);
      if (this.#phase !== 'connecting') throw this.#unavailable('transport closed while connecting');
      this.#phase = 'connected';
      return token;
    } catch (error) {
      if (this.#phase === 'connecting') this.#phase = 'closed';
      await this.#client.close();
      await this.#teardown();
      throw error;
    } finally {
      this.#clock.clearTimeout(timer);
      this.#startFailed = undefined;
    }
  }

  async #start(): Promise<TokenInfo> {
    const secret = randomBytes(SECRET_BYTES);
    this.#secret = secret;
    try {
      await this.#process.start(secret);
      return await this.#client.connect();
    } finally {
      // The hello's frame is built by now; the host keeps its own copy for later connections.
      this.#secret = undefined;
      secret.fill(0);
    }
  }

  #unavailable(reason: string): MemberUnreachableError {
    return new MemberUnreachableError(this.#member, reason);
  }

  /**
   * Sends one command to the host; many may be in flight.
   * @throws {@link CommandFailedError} when the module answered with an error (or the
   *   command cannot be sent: too big, not serializable); {@link MemberUnreachableError}
   *   when the host is gone or the transport closed
   */
  execute<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    return this.#client.execute(command);
  }

  /**
   * Asks the host for its counters (queue depth, commands served and, with emulation,
   * the engines busy now and the most busy at once).
   * @throws {@link MemberUnreachableError} when the host is not reachable
   */
  hostStats(): Promise<HostStats> {
    return this.#client.hostStats();
  }

  /** `listener` is told once, with a {@link MemberUnreachableError}, when the host exits or the connection drops (never on `close()`). */
  onDisconnect(listener: (error: Error) => void): void {
    this.#disconnectListeners.push(listener);
  }

  /** @param listener gets the queue depth the host reports (commands queued + running there) */
  onHeartbeat(listener: (queueDepth: number) => void): void {
    this.#client.onHeartbeat(listener);
  }

  /**
   * Rejects pending commands, ends the connection, stops the host (SIGTERM, then SIGKILL
   * after `closeTimeoutMs`: a stopped or hung host cannot hold this up) and removes the
   * private directory. Idempotent. Until then the host process and its socket keep the
   * event loop alive, as the in-process transport's threads do.
   */
  async close(options?: { readonly force?: boolean }): Promise<void> {
    // A failed member's host is hung or gone: a SIGTERM a stopped process cannot receive
    // would only delay the reconnection by closeTimeoutMs.
    if (options?.force === true) this.#force = true;
    if (this.#phase !== 'closed') {
      const connecting = this.#phase === 'connecting';
      this.#phase = 'closed';
      const closing = this.#client.close();
      if (connecting) this.#startFailed?.(this.#unavailable('transport closed while connecting'));
      await closing;
    }
    await this.#teardown();
  }

  #teardown(): Promise<void> {
    this.#teardownDone ??= this.#process.stop({ force: this.#force });
    return this.#teardownDone;
  }
}
