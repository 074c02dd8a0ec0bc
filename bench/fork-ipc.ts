/**
 * Both ends of the benchmark's worker processes started with child_process.fork and driven
 * over the IPC channel, one request at a time (bench/limit.ts with bench/limit-child.ts,
 * bench/fleet.ts with bench/fleet-app.ts):
 *
 * - parent: {@link ForkedChild}, one process and its pending request;
 * - child: {@link serveParent} (each request handled, a failure answered with
 *   `{ type: 'error', message }` and the process ends) and {@link waitUntilEpoch} (every
 *   child starts its loop at the same instant, whatever the IPC delays).
 *
 * Importing this module starts nothing.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** A message over the channel: its `type`, and the `message` of an error reply. */
export interface IpcMessage {
  readonly type: string;
  readonly message?: string;
}

/** Options of {@link ForkedChild}. */
export interface ForkedChildOptions {
  /** child_process.fork's `serialization` ('advanced' carries typed arrays). @default 'json' */
  readonly serialization?: 'json' | 'advanced';
  /** How long {@link ForkedChild.close} waits before SIGKILL (ms). */
  readonly closeGraceMs: number;
}

/** One forked process and its pending request (one at a time). */
export class ForkedChild<Request extends IpcMessage, Reply extends IpcMessage> {
  readonly #process: ChildProcess;
  readonly #closeGraceMs: number;
  #pending: { resolve: (reply: Reply) => void; reject: (error: Error) => void } | undefined;
  #exited: Error | undefined;

  /**
   * @param script the child's entry (bench/paths.ts benchScript)
   * @param label names the process in errors, e.g. `limit process 0`
   */
  constructor(script: string, readonly label: string, options: ForkedChildOptions) {
    this.#closeGraceMs = options.closeGraceMs;
    // fork() passes process.execArgv on: under tsx that is its loader, so the child runs
    // TypeScript too (compiled, it runs the compiled sibling). The child's own stdio goes to ours (its errors are visible).
    this.#process = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: options.serialization ?? 'json' });
    this.#process.on('message', (reply: Reply) => {
      const p = this.#pending;
      this.#pending = undefined;
      if (p === undefined) return;
      if (reply.type === 'error') p.reject(new Error(`${label}: ${reply.message}`));
      else p.resolve(reply);
    });
    this.#process.on('exit', (code, signal) => {
      this.#exited = new Error(`${label} exited (${signal ?? `code ${code}`})`);
      const p = this.#pending;
      this.#pending = undefined;
      p?.reject(this.#exited);
    });
  }

  /** Sends `message` and waits for the reply (an error reply rejects). */
  request(message: Request, timeoutMs: number): Promise<Reply> {
    if (this.#exited !== undefined) return Promise.reject(this.#exited);
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending = undefined;
        reject(new Error(`${this.label}: no answer to ${message.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.#process.send(message);
    });
  }

  /** Sends `{ type: 'close' }`; kills the process if it has not gone after the grace time. */
  async close(): Promise<void> {
    if (this.#exited !== undefined) return;
    const gone = new Promise<void>((resolve) => this.#process.once('exit', () => resolve()));
    if (this.#process.connected) this.#process.send({ type: 'close' });
    const timer = setTimeout(() => this.#process.kill('SIGKILL'), this.#closeGraceMs);
    await gone;
    clearTimeout(timer);
  }
}

/** Now, as an epoch time in ms (performance.timeOrigin + performance.now()). */
export const epochNow = (): number => performance.timeOrigin + performance.now();

/**
 * Returns at the epoch time `startAt` (ms): sleeps most of the wait, then spins the last
 * 2 ms, since a timer alone can be late by a few ms, which would let one child start alone.
 */
export async function waitUntilEpoch(startAt: number): Promise<void> {
  const wait = startAt - epochNow() - 2;
  if (wait > 0) await sleep(wait);
  while (epochNow() < startAt) {
    /* spin */
  }
}

/**
 * The child's side: handles every request from the parent; a failure answers
 * `{ type: 'error', message }`, and the process ends with a non-zero code. Exits with 2 if
 * the process was not forked.
 *
 * @param self e.g. `bench/limit-child`, and `parent` e.g. `bench/limit`, for that message
 * @param onDisconnect the parent went away (Ctrl-C, a crash): release what is open and exit
 */
export function serveParent<Request>(self: string, parent: string, handle: (request: Request) => Promise<void>, onDisconnect: () => void): void {
  if (process.send === undefined) {
    console.error(`${self} is started by ${parent} (child_process.fork), not by hand`);
    process.exit(2);
  }
  process.on('message', (request: Request) => {
    handle(request).catch((error: unknown) => {
      process.send!({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) } satisfies IpcMessage);
      process.exitCode = 1;
      process.disconnect();
    });
  });
  // The parent going away must not leave this process behind.
  process.on('disconnect', onDisconnect);
}
