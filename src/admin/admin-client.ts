/**
 * A client of a group's admin endpoint (what `pkcs11-ha --connect <socket>` uses): one
 * connection, requests paired with their answers by id.
 */
import { connect, type Socket } from 'node:net';
import type { HaError } from '../errors/ha-error.js';
import type { ResyncProgressEvent } from '../events/group-events.js';
import { AdminError, encodeLine, errorFromWire, lineSplitter, type AdminAnswer, type AdminMethod, type AdminMethods } from './admin-protocol.js';

interface Pending {
  resolve(result: unknown): void;
  reject(error: HaError): void;
  progress: ((event: ResyncProgressEvent) => void) | undefined;
}

/**
 * A connection to an admin endpoint.
 *
 * @example
 * const admin = await AdminClient.connect('/run/app/pkcs11-ha.sock');
 * try {
 *   console.log(await admin.request('status', {}));
 *   await admin.request('standby', { member: 'hsm-c', standby: true });
 * } finally {
 *   admin.close();
 * }
 */
export class AdminClient {
  readonly #socket: Socket;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #lost: AdminError | undefined;

  private constructor(socket: Socket, path: string) {
    this.#socket = socket;
    socket.on(
      'data',
      lineSplitter(
        (line) => this.#onLine(line),
        () => this.#fail(new AdminError('bad-request', `an answer from ${path} was too long`)),
      ),
    );
    socket.on('error', (error) => this.#fail(new AdminError('connection-lost', `connection to ${path} lost: ${error.message}`, { cause: error })));
    socket.on('close', () => this.#fail(new AdminError('connection-lost', `${path} closed the connection`)));
  }

  /**
   * Connects to the endpoint at `path`.
   * @throws {@link AdminError} `unreachable` when nothing answers there (or it may not be opened), or after `timeoutMs`
   */
  static connect(path: string, options: { timeoutMs?: number } = {}): Promise<AdminClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new AdminError('unreachable', `no admin endpoint answered at ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new AdminClient(socket, path));
      });
      socket.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new AdminError('unreachable', `no admin endpoint at ${path} (${error.code ?? error.message})`, { cause: error }));
      });
    });
  }

  /**
   * Sends one request and waits for its answer.
   * @param onProgress called with each progress line (`settle` sends them)
   * @throws {@link HaError} with the group's code (e.g. `ERR_INVALID_ARGUMENT` for an unknown member), or an {@link AdminError}
   */
  request<M extends AdminMethod>(method: M, params: AdminMethods[M]['params'], onProgress?: (event: ResyncProgressEvent) => void): Promise<AdminMethods[M]['result']> {
    if (this.#lost) return Promise.reject(this.#lost);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (result: unknown) => void, reject, progress: onProgress });
      this.#socket.write(encodeLine({ id, method, params }));
    });
  }

  /** Closes the connection; pending requests fail with `connection-lost`. Idempotent. */
  close(): void {
    this.#socket.destroy();
    this.#fail(new AdminError('connection-lost', 'the client closed the connection'));
  }

  #onLine(line: string): void {
    let answer: AdminAnswer;
    try {
      answer = JSON.parse(line) as AdminAnswer;
    } catch {
      this.#fail(new AdminError('bad-request', 'the endpoint sent a line that is not JSON'));
      return;
    }
    const pending = this.#pending.get(answer.id);
    if (pending === undefined) return;
    if ('progress' in answer) pending.progress?.(answer.progress);
    else {
      this.#pending.delete(answer.id);
      if ('error' in answer) pending.reject(errorFromWire(answer.error));
      else pending.resolve(answer.result);
    }
  }

  #fail(error: AdminError): void {
    this.#lost ??= error;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    if (!this.#socket.destroyed) this.#socket.destroy();
  }
}
