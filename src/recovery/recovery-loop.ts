/**
 * Background recovery: a failed member is tried again every `intervalMs`, up to
 * `maxAttempts` attempts (0 = never automatically; Infinity = without end). It runs on
 * timers of the group's clock, never on an application call's path.
 *
 * The attempt count lives in the member's state (`failed.attempts`), so the loop keeps
 * nothing but one timer per member: the group tells it each time a member becomes
 * failed, and a failed attempt makes the member failed again with one more attempt.
 */
import type { Clock, TimerHandle } from '../clock/clock.js';

/** When and how often failed members are tried again. */
export interface RecoveryPolicy {
  /** Time between a failure (or a failed attempt) and the next attempt. @default 5000 */
  readonly intervalMs: number;
  /** Most automatic attempts per failure; 0 turns automatic recovery off; Infinity never gives up. @default Infinity */
  readonly maxAttempts: number;
}

/** Options of a {@link RecoveryLoop}. */
export interface RecoveryLoopOptions extends RecoveryPolicy {
  readonly clock: Clock;
  /** Runs one recovery attempt of the named member; how it ended is read from {@link failedAttempts}. */
  readonly attempt: (member: string) => Promise<unknown>;
  /** The attempts so far when the member is failed now, undefined when it is not failed. */
  readonly failedAttempts: (member: string) => number | undefined;
}

/** Schedules recovery attempts of failed members. */
export class RecoveryLoop {
  readonly #o: RecoveryLoopOptions;
  readonly #timers = new Map<string, TimerHandle>();
  readonly #running = new Set<string>();
  #closed = false;

  constructor(options: RecoveryLoopOptions) {
    this.#o = options;
  }

  /**
   * A member is failed after `attempts` attempts: schedules the next one, unless the
   * policy allows no more, one is scheduled or running already, or the loop is closed.
   *
   * @returns true when an attempt was scheduled
   */
  failed(member: string, attempts: number): boolean {
    if (this.#closed || this.#timers.has(member) || this.#running.has(member)) return false;
    if (attempts >= this.#o.maxAttempts) return false;
    const timer = this.#o.clock.setTimeout(() => {
      this.#timers.delete(member);
      void this.run(member);
    }, this.#o.intervalMs);
    this.#timers.set(member, timer);
    return true;
  }

  /** Whether an attempt of this member is scheduled or running. */
  busy(member: string): boolean {
    return this.#timers.has(member) || this.#running.has(member);
  }

  /**
   * Runs an attempt now (the manual `group.recover`), cancelling a scheduled one. A second
   * call while one runs joins nothing: it returns false at once.
   *
   * @returns false when an attempt of this member was already running
   */
  async run(member: string): Promise<boolean> {
    this.cancel(member);
    if (this.#running.has(member)) return false;
    this.#running.add(member);
    try {
      await this.#o.attempt(member).catch(() => undefined);
    } finally {
      this.#running.delete(member);
    }
    // Failed again: the next attempt after the interval, if the policy allows one.
    const attempts = this.#o.failedAttempts(member);
    if (attempts !== undefined) this.failed(member, attempts);
    return true;
  }

  /** Cancels a scheduled attempt (the member was removed or recovered by hand). */
  cancel(member: string): void {
    const timer = this.#timers.get(member);
    if (timer !== undefined) this.#o.clock.clearTimeout(timer);
    this.#timers.delete(member);
  }

  /** Cancels everything; no attempt is scheduled afterwards. */
  close(): void {
    this.#closed = true;
    for (const member of [...this.#timers.keys()]) this.cancel(member);
  }
}
