/**
 * The admin endpoint an application may open (the group's `admin: { socket }` option):
 * a Unix socket, mode 0600, through which the `pkcs11-ha` CLI reads and steers the group
 * the application runs. Whoever can open the socket file may use it: it authenticates by
 * file permissions only, and so it accepts no PIN (a member's PINs come from the
 * application's own configuration or environment).
 *
 * The group is handed in as a collaborator; the endpoint never reaches into it otherwise.
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { ConfigError } from '../errors/ha-error.js';
import type { ResyncProgressEvent } from '../events/group-events.js';
import { ADMIN_METHODS, AdminError, encodeLine, lineSplitter, wireError, type AdminAnswer, type AdminMethod, type AdminRequest } from './admin-protocol.js';

/** The `admin` option of a group. */
export interface AdminOptions {
  /**
   * Path of the Unix socket to create (mode 0600). A stale socket left by a process that
   * died is replaced; any other file there, or a socket another process listens on, is
   * an error. The socket is removed when the group closes.
   */
  readonly socket: string;
}

/** What the endpoint acts on: the group's public methods (an `HaGroup` is one). */
export interface AdminGroup {
  status(): unknown;
  recover(name: string): Promise<boolean>;
  setStandby(name: string, standby: boolean): void;
  /** Validates `config` itself (the endpoint only refuses PINs in it). */
  addMember(config: AdminMemberConfig): Promise<string>;
  removeMember(name: string): Promise<void>;
  close(): Promise<void>;
  on(event: 'resyncProgress', listener: (event: ResyncProgressEvent) => void): unknown;
  off(event: 'resyncProgress', listener: (event: ResyncProgressEvent) => void): unknown;
}

/** A member configuration as the endpoint passes it on, unchecked but for PINs. */
export interface AdminMemberConfig {
  readonly module: unknown;
  readonly token: unknown;
}

/** What the group hands the endpoint beside its public methods. */
export interface AdminHooks {
  /** Settles what serving members owe (the group's repair of owing members). */
  settle(): Promise<void>;
  /** Aborted when the group closes: the endpoint closes with it. */
  readonly signal: AbortSignal;
}

/**
 * Validates the `admin` option.
 * @throws {@link ConfigError} for anything but `undefined` or `{ socket: <non-empty path> }`
 */
export function resolveAdminOptions(raw: unknown): AdminOptions | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError('admin', `must be { socket: <path> }, got ${JSON.stringify(raw)}`);
  for (const key of Object.keys(raw)) if (key !== 'socket') throw new ConfigError(`admin.${key}`, 'unknown option (known: socket)');
  const socket = (raw as { socket?: unknown }).socket;
  if (typeof socket !== 'string' || socket.length === 0) throw new ConfigError('admin.socket', `must be a non-empty path, got ${JSON.stringify(socket) ?? 'undefined'}`);
  return { socket };
}

/**
 * Opens the admin endpoint of a group that has just opened; it closes when `hooks.signal`
 * aborts. If it cannot open, the group is closed and the error thrown (an application
 * that asked for an endpoint does not run silently without one).
 *
 * @throws {@link AdminError} `not-a-socket` or `in-use` for an unusable socket path
 */
export async function openAdminEndpoint(options: AdminOptions, group: AdminGroup, hooks: AdminHooks): Promise<AdminServer> {
  try {
    const server = await AdminServer.listen(options.socket, group, hooks.settle);
    if (hooks.signal.aborted) server.close();
    else hooks.signal.addEventListener('abort', () => server.close(), { once: true });
    return server;
  } catch (error) {
    await group.close();
    throw error;
  }
}

/** A listening admin endpoint. */
export class AdminServer {
  readonly #path: string;
  readonly #server: Server;
  readonly #group: AdminGroup;
  readonly #settle: () => Promise<void>;
  readonly #connections = new Set<Socket>();
  /** The socket file's inode, so that close never removes a file someone else put there. */
  #inode = -1;
  #closed = false;

  private constructor(path: string, group: AdminGroup, settle: () => Promise<void>) {
    this.#path = path;
    this.#group = group;
    this.#settle = settle;
    this.#server = createServer((socket) => this.#accept(socket));
  }

  /**
   * Listens on `path` (see {@link AdminOptions.socket}).
   * @throws {@link AdminError} `not-a-socket` or `in-use`
   */
  static async listen(path: string, group: AdminGroup, settle: () => Promise<void>): Promise<AdminServer> {
    await clearStaleSocket(path);
    const admin = new AdminServer(path, group, settle);
    await admin.#listen();
    return admin;
  }

  /** The socket's path. */
  get path(): string {
    return this.#path;
  }

  async #listen(): Promise<void> {
    const server = this.#server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => reject(error.code === 'EADDRINUSE' ? new AdminError('in-use', `${this.#path} appeared while the endpoint opened`) : error));
      // The socket file is made when listen binds, synchronously: a umask of 0177 around it
      // means it never exists with a mode wider than 0600. (Worker threads may not change
      // the umask; the chmod below then narrows it at once.)
      const previous = setUmask(0o177);
      try {
        server.listen(this.#path, () => resolve());
      } finally {
        if (previous !== undefined) setUmask(previous);
      }
    });
    chmodSync(this.#path, 0o600);
    this.#inode = lstatSync(this.#path).ino;
  }

  /** Stops listening, drops every connection and removes the socket file. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const socket of this.#connections) socket.destroy();
    try {
      if (lstatSync(this.#path).ino === this.#inode) unlinkSync(this.#path);
    } catch {
      // Already gone.
    }
  }

  #accept(socket: Socket): void {
    this.#connections.add(socket);
    socket.on('close', () => this.#connections.delete(socket));
    socket.on('error', () => socket.destroy()); // the client went away; its answers are dropped
    const send = (answer: AdminAnswer) => {
      if (!socket.destroyed && socket.writable) socket.write(encodeLine(answer));
    };
    socket.on(
      'data',
      lineSplitter(
        (line) => void this.#answer(line, send),
        () => {
          send({ id: 0, error: wireError(new AdminError('bad-request', 'request line too long')) });
          socket.end();
        },
      ),
    );
  }

  async #answer(line: string, send: (answer: AdminAnswer) => void): Promise<void> {
    let request: AdminRequest;
    try {
      request = parseRequest(line);
    } catch (error) {
      send({ id: requestId(line), error: wireError(error) });
      return;
    }
    try {
      send({ id: request.id, result: (await this.#run(request, (progress) => send({ id: request.id, progress }))) ?? null });
    } catch (error) {
      send({ id: request.id, error: wireError(error) });
    }
  }

  async #run(request: AdminRequest, progress: (event: ResyncProgressEvent) => void): Promise<unknown> {
    const group = this.#group;
    const params = request.params as Record<string, unknown>;
    switch (request.method) {
      case 'status':
        return group.status();
      case 'recover':
        return group.recover(memberParam(params));
      case 'standby':
        if (typeof params.standby !== 'boolean') throw new AdminError('bad-request', 'standby needs params.standby, a boolean');
        group.setStandby(memberParam(params), params.standby);
        return null;
      case 'addMember':
        return group.addMember(memberConfigParam(params.config));
      case 'removeMember':
        await group.removeMember(memberParam(params));
        return null;
      case 'settle':
        group.on('resyncProgress', progress);
        try {
          await this.#settle();
        } finally {
          group.off('resyncProgress', progress);
        }
        return null;
    }
  }
}

/** Removes a stale socket at `path`; refuses any other file and a socket someone listens on. */
async function clearStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!isSocket) throw new AdminError('not-a-socket', `${path} exists and is not a socket: it is never replaced`);
  if (await answers(path)) throw new AdminError('in-use', `another process listens on ${path}`);
  unlinkSync(path); // left by a process that died
}

/** True when something accepts a connection on the socket. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

function setUmask(mask: number): number | undefined {
  try {
    return process.umask(mask);
  } catch {
    return undefined;
  }
}

function parseRequest(line: string): AdminRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new AdminError('bad-request', 'a request is one line of JSON');
  }
  if (typeof value !== 'object' || value === null) throw new AdminError('bad-request', 'a request is a JSON object { id, method, params }');
  const { id, method, params = {} } = value as { id?: unknown; method?: unknown; params?: unknown };
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) throw new AdminError('bad-request', 'a request needs an id, a positive integer');
  if (typeof method !== 'string' || !(ADMIN_METHODS as readonly string[]).includes(method)) {
    throw new AdminError('unknown-method', `unknown method ${JSON.stringify(method)} (known: ${ADMIN_METHODS.join(', ')})`);
  }
  if (typeof params !== 'object' || params === null || Array.isArray(params)) throw new AdminError('bad-request', 'params must be an object');
  return { id, method: method as AdminMethod, params: params as AdminRequest['params'] };
}

/** The id of a line that is not a valid request, if it has one; else 0. */
function requestId(line: string): number {
  try {
    const id = (JSON.parse(line) as { id?: unknown }).id;
    return typeof id === 'number' && Number.isSafeInteger(id) && id > 0 ? id : 0;
  } catch {
    return 0;
  }
}

function memberParam(params: Record<string, unknown>): string {
  if (typeof params.member !== 'string' || params.member.length === 0) throw new AdminError('bad-request', 'params.member must be a member name');
  return params.member;
}

/** A member configuration with no PIN anywhere in it (the endpoint accepts none). */
function memberConfigParam(config: unknown): AdminMemberConfig {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new AdminError('bad-request', 'params.config must be a member configuration object');
  const pin = pinPath(config, 'config');
  if (pin !== undefined) {
    throw new AdminError('pin-refused', `the admin endpoint accepts no PIN (${pin}): a member's PINs come from the application's own configuration or environment`);
  }
  return config as AdminMemberConfig;
}

/** The path of the first key that looks like a PIN or secret, anywhere in `value`. */
function pinPath(value: unknown, path: string): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  for (const [key, inner] of Object.entries(value)) {
    if (/pin|secret|password/i.test(key)) return `${path}.${key}`;
    const found = pinPath(inner, `${path}.${key}`);
    if (found !== undefined) return found;
  }
  return undefined;
}
