/**
 * A member's logged-in sessions: one per in-flight operation, because two calls on one
 * SoftHSM session at once crash the process. Sessions are opened on demand up to a cap;
 * past it, callers wait in order.
 */
import type { Handle } from '../pkcs11/commands.js';

/** Opens and closes a member's sessions. */
export interface SessionSource {
  open(): Promise<Handle>;
  close(session: Handle): Promise<void>;
}

interface Waiter {
  readonly resolve: (session: Handle) => void;
  readonly reject: (error: Error) => void;
}

/** Statistics of a pool, for status snapshots. */
export interface SessionPoolStats {
  readonly open: number;
  readonly idle: number;
  readonly waiting: number;
  readonly cap: number;
}

/** A capped pool of sessions for one member. */
export class SessionPool {
  readonly #source: SessionSource;
  readonly #cap: number;
  readonly #idle: Handle[] = [];
  readonly #waiters: Waiter[] = [];
  #open = 0;
  #closedReason: Error | undefined;

  constructor(source: SessionSource, cap: number) {
    this.#source = source;
    this.#cap = cap;
  }

  /** Counts for status. */
  get stats(): SessionPoolStats {
    return { open: this.#open, idle: this.#idle.length, waiting: this.#waiters.length, cap: this.#cap };
  }

  /** An idle session right away, or undefined (then use {@link acquire}). */
  tryAcquire(): Handle | undefined {
    return this.#closedReason ? undefined : this.#idle.pop();
  }

  /** A session no one else uses until {@link release}. */
  acquire(): Promise<Handle> {
    if (this.#closedReason) return Promise.reject(this.#closedReason);
    const idle = this.#idle.pop();
    if (idle !== undefined) return Promise.resolve(idle);
    if (this.#open < this.#cap) return this.#openOne();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #openOne(): Promise<Handle> {
    this.#open++;
    return this.#source.open().catch((error: unknown) => {
      this.#open--;
      // The place under the cap is free again: the longest waiter tries its own open.
      const waiter = this.#closedReason ? undefined : this.#waiters.shift();
      if (waiter) this.#openOne().then(waiter.resolve, waiter.reject);
      throw error;
    });
  }

  /** Gives a session back (to the longest waiter first). */
  release(session: Handle): void {
    if (this.#closedReason) {
      this.#open--;
      void this.#source.close(session).catch(() => undefined);
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(session);
    else this.#idle.push(session);
  }

  /**
   * Closes a session that must not be used again (an operation may still be open in it),
   * once its replacement is open: closing a token's last session would log the
   * application out of it (PKCS#11, C_CloseSession). The replacement goes to the longest
   * waiter or the idle sessions. Never throws.
   */
  async replace(session: Handle): Promise<void> {
    if (!this.#closedReason) {
      try {
        this.release(await this.#source.open());
      } catch {
        this.#open--;
      }
    } else {
      this.#open--;
    }
    await this.#source.close(session).catch(() => undefined);
  }

  /** Forgets a session that is broken (its member lost it); does not try to close it. */
  discard(_session: Handle): void {
    this.#open--;
  }

  /**
   * Closes idle sessions and refuses new acquisitions; sessions in use are closed when
   * released. Waiters are rejected with `reason`.
   */
  async drain(reason: Error): Promise<void> {
    this.#closedReason = reason;
    for (const w of this.#waiters.splice(0)) w.reject(reason);
    const idle = this.#idle.splice(0);
    this.#open -= idle.length;
    await Promise.all(idle.map((s) => this.#source.close(s).catch(() => undefined)));
  }
}
