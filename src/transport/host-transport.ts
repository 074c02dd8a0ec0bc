/**
 * A member's module in its own child process (a member host, `src/host/member-host.ts`),
 * reached over a Unix socket. Unlike worker threads, a process isolates a crash or a hang
 * of the module: the application sees the member fail, and goes on.
 *
 * Security: the socket lives in a fresh directory only this user can enter (0700), the
 * socket file is 0600, and a client proves itself with a 32-byte secret generated here
 * and given to the host over its IPC channel (never argv or env, which other processes of
 * the user can read and children inherit).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { systemClock, type Clock, type TimerHandle } from '../clock/clock.js';
import { ConfigError, MemberUnreachableError } from '../errors/ha-error.js';
import {
  FrameDecoder,
  FrameWriter,
  HostProtocolError,
  SECRET_BYTES,
  type EmulatedCapacity,
  type HostCalls,
  type HostMessage,
  type HostStats,
  type HostStatusMessage,
  type MemberHostConfig,
  type StartFailure,
  type StartMessage,
} from '../host/host-protocol.js';
import type { Command, CommandName, CommandResult } from '../pkcs11/commands.js';
import type { InProcessTransportOptions } from './in-process-transport.js';
import { CommandFailedError, type TokenInfo, type Transport } from './transport.js';

export type { EmulatedCapacity, HostStats } from '../host/host-protocol.js';

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
}

/** How long to wait for a SIGKILLed host to be reaped before `close()` gives up on it. */
const KILL_WAIT_MS = 5_000;
/** Longest Unix socket path that fits `sockaddr_un` on Linux and macOS, with room to spare. */
const MAX_SOCKET_PATH = 100;

type State = 'new' | 'connecting' | 'ready' | 'lost' | 'closed';

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  /** False for the transport's own requests (stats), which `pending` does not count. */
  readonly command: boolean;
}

/** The host's entry: compiled JavaScript beside this file, or the TypeScript source run through tsx (tests, dev). */
function hostArgs(): string[] {
  const js = fileURLToPath(new URL('../host/member-host.js', import.meta.url));
  if (existsSync(js)) return [js];
  // tsx's package entry is its loader; an absolute URL so it resolves from any cwd.
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return ['--import', tsx, fileURLToPath(new URL('../host/member-host.ts', import.meta.url))];
}

function positive(value: number | undefined, fallback: number, path: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(path, `must be a positive number of milliseconds, got ${String(value)}`);
  }
  return value;
}

/** Rebuilds the typed error the host met while starting: the same class and message the in-process transport gives. */
function rebuildStartFailure(f: StartFailure, member: string): Error {
  const strip = (prefix: string): string => (f.message.startsWith(prefix) ? f.message.slice(prefix.length) : f.message);
  if (f.code === 'ERR_CONFIG' && f.path !== undefined) return new ConfigError(f.path, strip(`${f.path}: `));
  if (f.code === 'ERR_MEMBER_UNREACHABLE' && f.member !== undefined) return new MemberUnreachableError(f.member, strip(`member ${f.member}: `));
  return new MemberUnreachableError(member, `member host failed to start: ${f.message}`);
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
  readonly #options: HostTransportOptions;
  readonly #clock: Clock;
  readonly #heartbeatIntervalMs: number;
  readonly #startTimeoutMs: number;
  readonly #closeTimeoutMs: number;
  /** Stop the host with SIGKILL at once (it failed). */
  #force = false;
  #state: State = 'new';
  #dir: string | undefined;
  #socketPath: string | undefined;
  #child: ChildProcess | undefined;
  #exited = false;
  #exitWaiters: (() => void)[] = [];
  #stderrTail = '';
  #socket: Socket | undefined;
  #writer: FrameWriter | undefined;
  readonly #decoder = new FrameDecoder({ buffers: 'copy' });
  readonly #pending = new Map<number, Pending>();
  #commands = 0;
  #nextId = 1;
  #lost: MemberUnreachableError | undefined;
  #teardownDone: Promise<void> | undefined;
  /** Fails a `connect()` in progress; set only while connecting. */
  #startFailed: ((error: Error) => void) | undefined;
  #onWelcome: ((token: TokenInfo) => void) | undefined;
  readonly #disconnectListeners: ((error: Error) => void)[] = [];
  readonly #heartbeatListeners: ((queueDepth: number) => void)[] = [];

  /** @throws {@link ConfigError} on an invalid option (the value is echoed) */
  constructor(options: HostTransportOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    const at = (name: string): string => `${options.configPath}.${name}`;
    this.#heartbeatIntervalMs = positive(options.heartbeatIntervalMs, 1000, at('heartbeatIntervalMs'));
    this.#startTimeoutMs = positive(options.startTimeoutMs, 30_000, at('startTimeoutMs'));
    this.#closeTimeoutMs = positive(options.closeTimeoutMs, 2000, at('closeTimeoutMs'));
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
  }

  /** Process id of the member host, once spawned (for diagnostics, and tests that kill it). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Path of the host's Unix socket, once chosen (inside a private 0700 directory). */
  get socketPath(): string | undefined {
    return this.#socketPath;
  }

  /** Commands sent and not yet answered. */
  get pending(): number {
    return this.#commands;
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
    if (this.#state !== 'new') throw this.#unavailable(this.#state === 'closed' ? 'transport closed' : 'connect() was called already');
    this.#state = 'connecting';
    const failed = new Promise<never>((_, reject) => {
      this.#startFailed = reject;
    });
    const timer = this.#clock.setTimeout(
      () => this.#startFailed?.(this.#unavailable(`member host did not start within ${this.#startTimeoutMs} ms${this.#stderrHint()}`)),
      this.#startTimeoutMs,
    );
    const starting = this.#start();
    // Whichever loses the race must not become an unhandled rejection.
    starting.catch(() => undefined);
    try {
      const token = await Promise.race([starting, failed]);
      if (this.#state !== 'connecting') throw this.#unavailable('transport closed while connecting');
      this.#state = 'ready';
      return token;
    } catch (error) {
      if (this.#state === 'connecting') this.#state = 'closed';
      await this.#teardown();
      throw error;
    } finally {
      this.#clock.clearTimeout(timer);
      this.#startFailed = undefined;
      this.#onWelcome = undefined;
    }
  }

  /** Each await may have let `close()` run: resources are made only while connecting, and recorded at once. */
  #checkStarting(): void {
    if (this.#teardownDone !== undefined) throw this.#unavailable('transport closed while connecting');
  }

  async #start(): Promise<TokenInfo> {
    const o = this.#options;
    const dir = await mkdtemp(join(tmpdir(), 'pkcs11-ha-host-'));
    if (this.#teardownDone !== undefined) {
      await rm(dir, { recursive: true, force: true });
      this.#checkStarting();
    }
    this.#dir = dir;
    // mkdtemp makes 0700 already; say it, in case a platform does otherwise.
    await chmod(dir, 0o700);
    const socketPath = join(dir, 'host.sock');
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
      throw this.#unavailable(`socket path ${socketPath} is too long for a Unix socket; set TMPDIR to a shorter directory`);
    }
    this.#socketPath = socketPath;
    this.#checkStarting();

    const child = spawn(process.execPath, hostArgs(), {
      env: { ...process.env, ...o.moduleEnv },
      // stderr is kept (a tail of it) to explain a host that dies while starting.
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    this.#child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      this.#stderrTail = (this.#stderrTail + text).slice(-2000);
    });
    child.once('exit', (code, signal) => this.#onExit(signal !== null ? `signal ${signal}` : `code ${String(code)}`));
    child.once('error', (error) => {
      // A process that never started emits no 'exit'.
      if (child.pid === undefined) this.#onExit(`spawn failed: ${error.message}`);
    });

    const secret = randomBytes(SECRET_BYTES);
    try {
      const ready = new Promise<void>((resolve, reject) => {
        child.on('message', (m: HostStatusMessage) => {
          if (m.t === 'ready') resolve();
          else if (m.t === 'failed') reject(rebuildStartFailure(m.error, o.member));
        });
      });
      const config: MemberHostConfig = {
        member: o.member,
        modulePath: o.modulePath,
        moduleEnv: o.moduleEnv,
        token: o.token,
        threads: o.threads,
        configPath: o.configPath,
        socketPath,
        heartbeatIntervalMs: this.#heartbeatIntervalMs,
        calls: o.calls ?? 'inline',
        ...(o.emulate === undefined ? {} : { emulate: { engines: o.emulate.engines, serviceTimeMs: o.emulate.serviceTimeMs } }),
      };
      const start: StartMessage = { t: 'start', secret, config };
      child.send(start);
      await ready;
      this.#checkStarting();

      const socket = createConnection(socketPath);
      this.#socket = socket;
      this.#writer = new FrameWriter(socket);
      socket.on('data', (chunk: Buffer) => this.#onData(chunk));
      socket.on('error', () => undefined); // 'close' follows and tells what matters
      socket.on('close', () => this.#onSocketClose());
      const welcome = new Promise<TokenInfo>((resolve) => {
        this.#onWelcome = resolve;
      });
      this.#writer.send({ t: 'hello', secret });
      return await welcome;
    } finally {
      // The frame holding it is built by now; the host keeps its own copy for later connections.
      secret.fill(0);
    }
  }

  #stderrHint(): string {
    const tail = this.#stderrTail.trim();
    return tail === '' ? '' : `; its stderr ends with: ${tail.slice(-500)}`;
  }

  #onExit(how: string): void {
    this.#exited = true;
    for (const w of this.#exitWaiters.splice(0)) w();
    if (this.#state !== 'connecting') {
      this.#lose(`member host exited (${how})`);
      return;
    }
    const report = (): void => this.#startFailed?.(this.#unavailable(`member host exited while starting (${how})${this.#stderrHint()}`));
    // A host that failed to start says why over IPC, then exits: its message may still be
    // in the channel, and comes before the channel's 'disconnect'.
    if (this.#child?.connected === true) this.#child.once('disconnect', report);
    else report();
  }

  #onSocketClose(): void {
    if (this.#state === 'connecting') this.#startFailed?.(this.#unavailable('member host closed the connection during the handshake'));
    else this.#lose('connection to the member host closed');
  }

  #onData(chunk: Buffer): void {
    try {
      this.#decoder.push(chunk, (m) => this.#dispatch(m));
    } catch (error) {
      const reason = `protocol error: ${error instanceof Error ? error.message : String(error)}`;
      if (this.#state === 'connecting') this.#startFailed?.(this.#unavailable(reason));
      else this.#lose(reason);
      this.#socket?.destroy();
    }
  }

  #dispatch(m: HostMessage): void {
    if (m.t === 'reply') {
      const p = this.#pending.get(m.id);
      if (p === undefined) return;
      this.#pending.delete(m.id);
      if (p.command) this.#commands--;
      if (m.ok) p.resolve(m.value);
      else p.reject(m.unreachable === true ? this.#unavailable(m.error.message) : new CommandFailedError(m.error));
    } else if (m.t === 'heartbeat') {
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
    return new MemberUnreachableError(this.#options.member, reason, { unsent });
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
   *   when the host is gone or the transport closed
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

  /** `listener` is told once, with a {@link MemberUnreachableError}, when the host exits or the connection drops (never on `close()`). */
  onDisconnect(listener: (error: Error) => void): void {
    this.#disconnectListeners.push(listener);
  }

  /** @param listener gets the queue depth the host reports (commands queued + running there) */
  onHeartbeat(listener: (queueDepth: number) => void): void {
    this.#heartbeatListeners.push(listener);
  }

  #rejectAll(error: MemberUnreachableError): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#commands = 0;
    for (const p of pending) p.reject(error);
  }

  /** The connection dropped on its own: fail everything at once, tell the listeners once, clean up. */
  #lose(reason: string): void {
    if (this.#state !== 'ready') return;
    this.#state = 'lost';
    const error = this.#unavailable(reason);
    this.#lost = error;
    this.#rejectAll(error);
    for (const listener of this.#disconnectListeners.splice(0)) listener(error);
    void this.#teardown();
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
    if (this.#state !== 'closed') {
      const connecting = this.#state === 'connecting';
      this.#state = 'closed';
      this.#rejectAll(this.#unavailable('transport closed'));
      if (connecting) this.#startFailed?.(this.#unavailable('transport closed while connecting'));
    }
    await this.#teardown();
  }

  #teardown(): Promise<void> {
    this.#teardownDone ??= (async () => {
      const socket = this.#socket;
      const child = this.#child;
      socket?.end();
      if (child !== undefined && !this.#exited) {
        let stopped = false;
        if (!this.#force) {
          child.kill('SIGTERM');
          stopped = await this.#waitExit(this.#closeTimeoutMs);
        }
        if (!stopped) {
          child.kill('SIGKILL');
          await this.#waitExit(KILL_WAIT_MS);
        }
      }
      socket?.destroy();
      if (this.#dir !== undefined) await rm(this.#dir, { recursive: true, force: true }).catch(() => undefined);
    })();
    return this.#teardownDone;
  }

  /** True when the host exited within `ms`. */
  #waitExit(ms: number): Promise<boolean> {
    if (this.#exited) return Promise.resolve(true);
    return new Promise((resolve) => {
      let timer: TimerHandle | undefined;
      const done = (): void => {
        if (timer !== undefined) this.#clock.clearTimeout(timer);
        resolve(true);
      };
      this.#exitWaiters.push(done);
      timer = this.#clock.setTimeout(() => {
        this.#exitWaiters = this.#exitWaiters.filter((w) => w !== done);
        resolve(false);
      }, ms);
    });
  }
}
