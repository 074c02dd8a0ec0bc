/**
 * A member host child process (`member-host.ts`), spawned and supervised for one member:
 * its private socket directory, the configuration and secret it gets over IPC, the wait
 * until it listens, its exit, and its stop. It carries no commands: a client reaches the
 * host over the socket (`src/rpc/rpc-client.ts`; `HostTransport` joins the two).
 *
 * Security: the socket lives in a fresh directory only this user can enter (0700), the
 * socket file is 0600, and the host is given the secret its clients must prove over its
 * IPC channel (never argv or env, which other processes of the user can read and children
 * inherit).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { systemClock, type Clock, type TimerHandle } from '../clock/clock.js';
import { ConfigError, MemberUnreachableError } from '../errors/ha-error.js';
import type { HostStatusMessage, MemberHostConfig, StartFailure, StartMessage } from './host-ipc.js';
import { removeOnExit } from './exit-cleanup.js';

/** Options of a {@link HostProcess}. */
export interface HostProcessOptions {
  /**
   * What the host needs to start, but its socket path (chosen here). Plain data only: it
   * is serialized over IPC. `moduleEnv` is also the host's environment.
   */
  readonly config: Omit<MemberHostConfig, 'socketPath'>;
  /** How long `stop()` lets the host stop after SIGTERM before it sends SIGKILL. */
  readonly closeTimeoutMs: number;
  /** The time seam. @default systemClock */
  readonly clock?: Clock;
  /** Told each line the host writes to its stderr. @default none */
  readonly onStderr?: ((line: string) => void) | undefined;
}

/** How long to wait for a SIGKILLed host to be reaped before `stop()` gives up on it. */
const KILL_WAIT_MS = 5_000;
/** Longest Unix socket path that fits `sockaddr_un` on Linux and macOS, with room to spare. */
const MAX_SOCKET_PATH = 100;

/** The host's entry: compiled JavaScript beside this file, or the TypeScript source run through tsx (tests, dev). */
function hostArgs(): string[] {
  const js = fileURLToPath(new URL('./member-host.js', import.meta.url));
  if (existsSync(js)) return [js];
  // tsx's package entry is its loader; an absolute URL so it resolves from any cwd.
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return ['--import', tsx, fileURLToPath(new URL('./member-host.ts', import.meta.url))];
}

/** Rebuilds the typed error the host met while starting: the same class and message the in-process transport gives. */
function rebuildStartFailure(f: StartFailure, member: string): Error {
  const strip = (prefix: string): string => (f.message.startsWith(prefix) ? f.message.slice(prefix.length) : f.message);
  if (f.code === 'ERR_CONFIG' && f.path !== undefined) return new ConfigError(f.path, strip(`${f.path}: `));
  if (f.code === 'ERR_MEMBER_UNREACHABLE' && f.member !== undefined) return new MemberUnreachableError(f.member, strip(`member ${f.member}: `));
  return new MemberUnreachableError(member, `member host failed to start: ${f.message}`);
}

/**
 * One member host process: `start()` spawns it and waits until it listens, `stop()` ends
 * it. Once per instance; a restarted member takes a fresh one.
 *
 * @example
 * const host = new HostProcess({ config, closeTimeoutMs: 2000 });
 * host.onExit((how) => console.log('host exited', how));
 * const socketPath = await host.start(secret);
 * // ... connect an RpcClient to socketPath, hello with the same secret ...
 * await host.stop();
 */
export class HostProcess {
  readonly #config: Omit<MemberHostConfig, 'socketPath'>;
  readonly #closeTimeoutMs: number;
  readonly #clock: Clock;
  #started = false;
  #dir: string | undefined;
  /** Stops the removal of the directory at process exit (done when `stop()` removed it). */
  #keepDir: (() => void) | undefined;
  #socketPath: string | undefined;
  #child: ChildProcess | undefined;
  #exited = false;
  #exitWaiters: (() => void)[] = [];
  readonly #exitListeners: ((how: string) => void)[] = [];
  #stderrTail = '';
  readonly #onStderr: ((line: string) => void) | undefined;
  /** The start of a stderr line not ended yet. */
  #stderrLine = '';
  /** Fails a `start()` waiting for the host's ready; set only then. */
  #failStart: ((error: Error) => void) | undefined;
  #stopDone: Promise<void> | undefined;

  constructor(options: HostProcessOptions) {
    this.#config = options.config;
    this.#closeTimeoutMs = options.closeTimeoutMs;
    this.#clock = options.clock ?? systemClock;
    this.#onStderr = options.onStderr;
  }

  /** Process id of the host, once spawned (for diagnostics, and tests that kill it). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Path of the host's Unix socket, once chosen (inside a private 0700 directory). */
  get socketPath(): string | undefined {
    return this.#socketPath;
  }

  /** `listener` is told once, with how it ended (`code 0`, `signal SIGKILL`, ...), when the host exits, whoever ended it. */
  onExit(listener: (how: string) => void): void {
    this.#exitListeners.push(listener);
  }

  /** The end of the host's stderr, as a clause for an error message (empty when it wrote nothing). */
  stderrHint(): string {
    const tail = this.#stderrTail.trim();
    return tail === '' ? '' : `; its stderr ends with: ${tail.slice(-500)}`;
  }

  /**
   * Makes the private directory, spawns the host, gives it its configuration and
   * `secret`, and waits until it has loaded the module, found the token and listens.
   * No timeout of its own: the caller's start deadline covers this and the handshake.
   * @returns the socket path
   * @throws {@link MemberUnreachableError} when the host exits first, finds no such token
   *   (with the in-process transport's message) or `stop()` was called; {@link ConfigError}
   *   when the module cannot be loaded
   */
  async start(secret: Uint8Array): Promise<string> {
    if (this.#started) throw this.#unavailable('start() was called already');
    this.#started = true;
    const dir = await mkdtemp(join(tmpdir(), 'pkcs11-ha-host-'));
    if (this.#stopDone !== undefined) {
      await rm(dir, { recursive: true, force: true });
      this.#checkStarting();
    }
    this.#dir = dir;
    this.#keepDir = removeOnExit(dir);
    // mkdtemp makes 0700 already; say it, in case a platform does otherwise.
    await chmod(dir, 0o700);
    const socketPath = join(dir, 'host.sock');
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
      throw this.#unavailable(`socket path ${socketPath} is too long for a Unix socket; set TMPDIR to a shorter directory`);
    }
    this.#socketPath = socketPath;
    this.#checkStarting();

    const child = spawn(process.execPath, hostArgs(), {
      env: { ...process.env, ...this.#config.moduleEnv },
      // stderr is kept (a tail of it) to explain a host that dies while starting.
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    this.#child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      this.#stderrTail = (this.#stderrTail + text).slice(-2000);
      if (this.#onStderr === undefined) return;
      const lines = (this.#stderrLine + text).split('\n');
      this.#stderrLine = lines.pop()!.slice(-2000);
      for (const line of lines) if (line.trim() !== '') this.#onStderr(line);
    });
    child.once('exit', (code, signal) => this.#onExit(signal !== null ? `signal ${signal}` : `code ${String(code)}`));
    child.once('error', (error) => {
      // A process that never started emits no 'exit'.
      if (child.pid === undefined) this.#onExit(`spawn failed: ${error.message}`);
    });

    const ready = new Promise<void>((resolve, reject) => {
      this.#failStart = reject;
      child.on('message', (m: HostStatusMessage) => {
        if (m.t === 'ready') resolve();
        else if (m.t === 'failed') reject(rebuildStartFailure(m.error, this.#config.member));
      });
    });
    const start: StartMessage = { t: 'start', secret, config: { ...this.#config, socketPath } };
    child.send(start);
    try {
      await ready;
    } finally {
      this.#failStart = undefined;
    }
    this.#checkStarting();
    return socketPath;
  }

  /** Each await of `start()` may have let `stop()` run: resources are made only while starting, and recorded at once. */
  #checkStarting(): void {
    if (this.#stopDone !== undefined) throw this.#unavailable('member host stopped while starting');
  }

  #unavailable(reason: string): MemberUnreachableError {
    return new MemberUnreachableError(this.#config.member, reason);
  }

  #onExit(how: string): void {
    this.#exited = true;
    for (const w of this.#exitWaiters.splice(0)) w();
    const failStart = this.#failStart;
    if (failStart !== undefined) {
      const report = (): void => failStart(this.#unavailable(`member host exited while starting (${how})${this.stderrHint()}`));
      // A host that failed to start says why over IPC, then exits: its message may still be
      // in the channel, and comes before the channel's 'disconnect'.
      if (this.#child?.connected === true) this.#child.once('disconnect', report);
      else report();
    }
    for (const listener of this.#exitListeners.splice(0)) listener(how);
  }

  /**
   * Stops the host (SIGTERM, then SIGKILL after `closeTimeoutMs`: a stopped or hung host
   * cannot hold this up) and removes the private directory. Idempotent: the first call
   * decides. Until then the host process keeps the event loop alive.
   *
   * @param options.force the host failed (hung or gone): SIGKILL at once, since a SIGTERM
   *   a stopped process cannot receive would only wait out `closeTimeoutMs`
   */
  stop(options?: { readonly force?: boolean }): Promise<void> {
    this.#stopDone ??= (async () => {
      const child = this.#child;
      if (child !== undefined && !this.#exited) {
        let stopped = false;
        if (options?.force !== true) {
          child.kill('SIGTERM');
          stopped = await this.#waitExit(this.#closeTimeoutMs);
        }
        if (!stopped) {
          child.kill('SIGKILL');
          await this.#waitExit(KILL_WAIT_MS);
        }
      }
      if (this.#dir !== undefined) await rm(this.#dir, { recursive: true, force: true }).catch(() => undefined);
      this.#keepDir?.();
    })();
    return this.#stopDone;
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
