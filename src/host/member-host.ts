/**
 * A member host: the entry of a CHILD PROCESS that serves one member's token over a Unix
 * socket, so that a crash or a hang of the PKCS#11 module takes down this process, not
 * the application (worker threads share the application's process and isolate nothing).
 *
 * Started by `HostProcess` (for a `HostTransport`), which gives it, over the IPC channel,
 * its configuration and a 32-byte secret (never argv or env: those are visible to other
 * processes of the user and inherited by children). The module's environment
 * (SOFTHSM2_CONF) is this process's own environment. The socket protocol is
 * `src/rpc/host-protocol.ts`; each client connection is a `HostConnection`.
 *
 * Commands run through an {@link InProcessTransport} here: its worker threads make the
 * long PKCS#11 calls (key generation, unwrap, searches), so this process's main thread
 * stays free to read the socket and send heartbeats while one runs. Short cryptographic
 * calls (encrypt, decrypt, sign, verify, digest) run, under
 * `calls: 'inline'` (the default), right on the main thread as they are read: no thread
 * hop, no re-encoding, one core per member; a hung one stops the heartbeats, so the
 * client's deadline catches it. Under `calls: 'threads'` they go to the worker threads too.
 * The steps of multi-part operations (encryptUpdate, ...) run where the hot calls do. Each
 * operation stays on one module session for its life: the client leases that session for
 * it, names it in every step, and never sends two steps of it at once.
 *
 * Lifecycle: the host exits when its parent goes away (IPC 'disconnect') and on SIGTERM,
 * closing the module cleanly; SIGINT is ignored because the parent decides when its
 * members stop (a Ctrl-C reaches the whole process group). A parent that went away
 * (killed outright, with no chance to clean up) leaves the host's socket directory to
 * the host: it removes it as it exits.
 */
import { timingSafeEqual } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { systemClock, type Clock, type TimerHandle } from '../clock/clock.js';
import { HaError } from '../errors/ha-error.js';
import { isMultipartCommand, type Command, type CommandName, type MultipartCommand } from '../pkcs11/commands.js';
import { scratchOutput } from '../pkcs11/run-command.js';
import type { HostStats, ReplyMessage } from '../rpc/host-protocol.js';
import { isFrameCommand, type FrameCommand } from '../transport/frame-codec.js';
import { InProcessTransport } from '../transport/in-process-transport.js';
import { CommandFailedError, type TokenInfo } from '../transport/transport.js';
import { CapacityEmulator } from './capacity-emulator.js';
import { ClientLoginGuard } from './client-login-guard.js';
import { hostSocketDirectory, removeOnExit } from './exit-cleanup.js';
import { HostConnection, type ConnectionHost } from './host-connection.js';
import type { HostStatusMessage, MemberHostConfig, StartFailure, StartMessage } from './host-ipc.js';
import { startOrphanWatchdog } from './orphan-watchdog.js';

/** How long a clean shutdown may take before the host exits anyway (a hung module must not keep it alive). */
const SHUTDOWN_TIMEOUT_MS = 5_000;

/** Serves one member's token to authenticated clients on a Unix socket (or any stream given to {@link MemberHost.serve}). */
export class MemberHost implements ConnectionHost {
  /** The token this host serves. */
  readonly token: TokenInfo;
  /** The time seam (heartbeats, handshake timeouts, emulation). */
  readonly clock: Clock;
  readonly #config: MemberHostConfig;
  readonly #secret: Buffer;
  readonly #transport: InProcessTransport;
  readonly #emulator: CapacityEmulator | undefined;
  readonly #inline: boolean;
  readonly #connections = new Set<HostConnection>();
  /** Connections whose last heartbeat reported load of other clients: each gets one `others: 0` when that load ends. */
  readonly #loadReported = new Set<HostConnection>();
  /** Per-client login state, sessions and session objects, when several clients share this host (`config.guardClients`). */
  readonly #guard: ClientLoginGuard | undefined;
  #server: Server | undefined;
  #heartbeatTimer: TimerHandle | undefined;
  /** Commands received and not yet answered, over all connections: the reported queue depth. */
  #depth = 0;
  #served = 0;
  #closing: Promise<void> | undefined;

  private constructor(config: MemberHostConfig, secret: Buffer, transport: InProcessTransport, token: TokenInfo, clock: Clock) {
    this.#config = config;
    this.#secret = secret;
    this.#transport = transport;
    this.token = token;
    this.clock = clock;
    this.#emulator = config.emulate === undefined ? undefined : new CapacityEmulator(config.emulate, clock);
    // Emulated capacity needs every command to pass through its engines.
    this.#inline = config.calls === 'inline' && this.#emulator === undefined;
    this.#guard = config.guardClients === true ? new ClientLoginGuard((c) => transport.execute(c as Extract<Command, { op: CommandName }>), token.slot) : undefined;
  }

  /**
   * Loads the module, finds the token and listens on `config.socketPath` (mode 0600).
   * @param onModuleLost called when the module's command threads die (the host cannot serve any more)
   * @throws what {@link InProcessTransport.connect} throws (ConfigError, MemberUnreachableError)
   */
  static async start(config: MemberHostConfig, secret: Buffer, onModuleLost: (error: Error) => void, clock: Clock = systemClock): Promise<MemberHost> {
    const transport = new InProcessTransport({
      member: config.member,
      modulePath: config.modulePath,
      moduleEnv: config.moduleEnv,
      token: config.token,
      threads: config.threads,
      configPath: config.configPath,
    });
    const token = await transport.connect();
    // Chaos runs only (src/host/injected-faults.ts): loaded when the member's module env names a control file.
    const faults = config.moduleEnv['PKCS11_HA_INJECT_FAULTS'];
    if (faults !== undefined) (await import('./injected-faults.js')).injectFaults(transport, faults);
    transport.onDisconnect(onModuleLost);
    const host = new MemberHost(config, secret, transport, token, clock);
    try {
      await host.#listen();
    } catch (error) {
      await host.close();
      throw error;
    }
    host.#armHeartbeat();
    return host;
  }

  async #listen(): Promise<void> {
    // No socket: a TLS member host (tls-member-host.ts) hands its connections to serve().
    if (this.#config.socketPath === undefined) return;
    // The socket file is created with the umask's mode: 0600 from its first instant, not
    // only after the chmod below (the directory is 0700 anyway).
    const previous = process.umask(0o177);
    const server = createServer((socket) => this.serve(socket));
    this.#server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.#config.socketPath!, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(previous);
    }
    await chmod(this.#config.socketPath!, 0o600);
  }

  /**
   * Serves one client connection on `stream`: the handshake first, then its requests.
   * The host's own Unix socket hands its connections here; so can any other listener
   * (a TLS server) or a test's in-memory stream. `onDrop` is told why the host drops the
   * connection (a protocol error, a wrong secret, a client that stopped reading), for a log.
   */
  serve(stream: Duplex, onDrop?: (reason: string) => void): void {
    this.#connections.add(new HostConnection(stream, this, this.clock, onDrop));
  }

  /** The heartbeat interval (ms), announced to clients in the welcome. */
  get heartbeatIntervalMs(): number {
    return this.#config.heartbeatIntervalMs;
  }

  /** Constant-time comparison of a client's secret with this host's. */
  checkSecret(candidate: Uint8Array): boolean {
    return candidate.length === this.#secret.length && timingSafeEqual(candidate, this.#secret);
  }

  /** Runs a command for a connection and answers it there. */
  run(connection: HostConnection, id: number, command: Command): void {
    const verdict = this.#guard?.check(connection, command);
    if (verdict instanceof CommandFailedError) {
      this.#depth++;
      this.#answer(connection, failureReply(id, verdict));
      return;
    }
    if (verdict === undefined && this.#inline && (isFrameCommand(command) || isMultipartCommand(command))) {
      this.#runInline(connection, id, command);
      return;
    }
    this.#depth++;
    connection.started.set(id, this.clock.now());
    const work = (): Promise<unknown> => (verdict === 'guard' ? this.#guard!.run(connection, command) : this.#transport.execute(command as Extract<Command, { op: CommandName }>));
    const running = this.#emulator === undefined ? work() : this.#emulator.run(work);
    // With several clients, a session runs one command at a time (client-login-guard.ts).
    const guard = this.#guard;
    guard?.begin(command);
    running.then(
      (value) => (guard?.end(command), this.#answer(connection, { t: 'reply', id, ok: true, value })),
      (error: unknown) => (guard?.end(command), this.#answer(connection, failureReply(id, error))),
    );
  }

  /** A short call made synchronously on this thread (see the file comment). */
  #runInline(connection: HostConnection, id: number, command: FrameCommand | MultipartCommand): void {
    this.#depth++;
    const start = performance.now();
    let reply: ReplyMessage;
    try {
      // The result is a view of the scratch output; the answer's frame copies it at once.
      reply = { t: 'reply', id, ok: true, value: this.#transport.runHere(command as Extract<Command, { op: CommandName }>, isFrameCommand(command) ? scratchOutput(command) : undefined) };
    } catch (error) {
      reply = failureReply(id, error);
    }
    this.#answer(connection, reply);
    connection.inlineWork(performance.now() - start);
  }

  #answer(connection: HostConnection, reply: ReplyMessage): void {
    this.#depth--;
    this.#served++;
    connection.started.delete(reply.id);
    // The load of the other clients (load seen across processes); none with one client.
    const others = this.#depth - connection.started.size;
    try {
      connection.send(others > 0 ? { ...reply, others } : reply);
    } catch (error) {
      // A result too big for a frame: the command ran, but its answer cannot travel.
      connection.send({ t: 'reply', id: reply.id, ok: false, error: { message: `RangeError: ${(error as Error).message}` } });
    }
  }

  /** What the host reports about itself. */
  stats(): HostStats {
    const e = this.#emulator;
    return {
      queueDepth: this.#depth,
      served: this.#served,
      ...(this.#guard === undefined ? {} : { logins: this.#guard.stats }),
      ...(e === undefined ? {} : { emulation: { engines: e.engines, serviceTimeMs: e.serviceTimeMs, busy: e.busy, maxBusy: e.maxBusy } }),
    };
  }

  /** Drops a closed connection. */
  forget(connection: HostConnection): void {
    this.#connections.delete(connection);
    this.#loadReported.delete(connection);
    void this.#guard?.release(connection);
  }

  /** Connections served now (for a listener's logs). */
  get connections(): number {
    return this.#connections.size;
  }

  /**
   * Every interval, a heartbeat on each connection whose oldest command has been pending
   * at least one interval: proof that the host is alive while a command takes long. The
   * first heartbeat for a command comes one to two intervals after it started.
   *
   * With several clients, also one on each connection whose OTHER clients have commands
   * in the host, whether it has any pending or not, and one `others: 0` when they stop:
   * the load report of an idle client would otherwise age out (it is refreshed only by
   * answers), and its scheduler would send it back to this busy host every time. A lone
   * client gets no more frames than before.
   */
  #armHeartbeat(): void {
    const interval = this.#config.heartbeatIntervalMs;
    this.#heartbeatTimer = this.clock.setTimeout(() => {
      const now = this.clock.now();
      let clients = 0;
      for (const connection of this.#connections) if (connection.authenticated) clients++;
      const shared = clients > 1;
      for (const connection of this.#connections) {
        if (!connection.authenticated) continue;
        const oldest = connection.started.values().next();
        const slow = !oldest.done && now - oldest.value >= interval;
        const others = this.#depth - connection.started.size;
        const load = others > 0 ? shared : this.#loadReported.has(connection);
        if (!slow && !load) continue;
        if (others > 0) this.#loadReported.add(connection);
        else this.#loadReported.delete(connection);
        connection.send(others > 0 ? { t: 'heartbeat', queueDepth: this.#depth, others } : { t: 'heartbeat', queueDepth: this.#depth });
      }
      this.#armHeartbeat();
    }, interval);
  }

  /** Stops listening, drops connections and closes the module (threads first, then C_Finalize). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#heartbeatTimer !== undefined) this.clock.clearTimeout(this.#heartbeatTimer);
      this.#server?.close();
      for (const connection of this.#connections) connection.destroy();
      await this.#transport.close();
    })();
    return this.#closing;
  }
}

function failureReply(id: number, error: unknown): ReplyMessage {
  if (error instanceof CommandFailedError) return { t: 'reply', id, ok: false, error: error.wire };
  // Not an answer of the module: the host's command threads are gone.
  return { t: 'reply', id, ok: false, error: { message: error instanceof Error ? error.message : String(error) }, unreachable: true };
}

function toStartFailure(error: unknown): StartFailure {
  if (HaError.is(error)) {
    const e = error as HaError & { member?: unknown; path?: unknown };
    return {
      code: e.code,
      message: e.message,
      ...(typeof e.member === 'string' ? { member: e.member } : {}),
      ...(typeof e.path === 'string' ? { path: e.path } : {}),
    };
  }
  return { message: error instanceof Error ? error.message : String(error) };
}

function isStartMessage(m: unknown): m is StartMessage {
  const v = m as Partial<StartMessage> | null;
  return typeof v === 'object' && v !== null && v.t === 'start' && v.secret instanceof Uint8Array && typeof v.config === 'object' && v.config !== null;
}

/** Runs this process as a member host for the parent at the other end of the IPC channel. */
function serveParent(): void {
  const send = (m: HostStatusMessage): Promise<void> =>
    new Promise((resolve) => {
      if (process.send === undefined || !process.connected) resolve();
      else process.send(m, undefined, {}, () => resolve());
    });
  let host: MemberHost | undefined;
  let stopping = false;
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(code), SHUTDOWN_TIMEOUT_MS).unref();
    void (host?.close() ?? Promise.resolve()).finally(() => process.exit(code));
  };
  /** The private directory of this host's socket, once the parent gave it. */
  let socketDir: string | undefined;
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => undefined);
  process.on('disconnect', () => {
    // The parent went away: if it was killed (SIGKILL), nobody else removes the directory.
    // Removed as this process exits (after close() unlinked the socket, or on the timeout).
    if (socketDir !== undefined) removeOnExit(socketDir);
    stop(0);
  });
  // If the main thread is stuck in a hung inline call, it never sees 'disconnect'.
  startOrphanWatchdog({ parentPid: process.ppid, intervalMs: 1000, graceMs: SHUTDOWN_TIMEOUT_MS + 1000 });
  process.once('message', (m: unknown) => {
    if (!isStartMessage(m)) {
      stop(2);
      return;
    }
    const secret = Buffer.from(m.secret);
    socketDir = hostSocketDirectory(m.config.socketPath);
    MemberHost.start(m.config, secret, (error) => {
      process.stderr.write(`member host ${m.config.member}: ${error.message}\n`);
      stop(1);
    }).then(
      async (started) => {
        host = started;
        if (stopping) await started.close();
        else await send({ t: 'ready' });
      },
      async (error: unknown) => {
        await send({ t: 'failed', error: toStartFailure(error) });
        stop(1);
      },
    );
  });
}

function isEntry(): boolean {
  const argv1 = process.argv[1];
  if (argv1 === undefined) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (process.send !== undefined && isEntry()) serveParent();
