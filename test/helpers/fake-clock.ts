/**
 * A clock that moves only when a test says so (STYLE habit 7): `advance(ms)` fires the
 * timers that fall due, in time order, and never waits in real time.
 */
import type { Clock, TimerHandle } from '../../src/clock/clock.js';

interface Timer {
  readonly id: number;
  readonly at: number;
  readonly callback: () => void;
}

/**
 * A manual {@link Clock} for tests.
 *
 * @example
 * const clock = new FakeClock();
 * clock.setTimeout(() => fired.push('a'), 100);
 * clock.advance(99);  // nothing yet
 * clock.advance(1);   // fires 'a'; clock.now() === 100
 */
export class FakeClock implements Clock {
  #now: number;
  #nextId = 1;
  /** Scheduled timers; kept unsorted, the due one is searched for on each step. */
  readonly #timers = new Map<number, Timer>();

  /** @param start the initial value of {@link now} @default 0 */
  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    // Like Node: a negative, NaN or missing delay means "as soon as possible".
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const id = this.#nextId++;
    this.#timers.set(id, { id, at: this.#now + delay, callback });
    return { id } as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    const id = (handle as unknown as { id?: unknown } | undefined)?.id;
    if (typeof id === 'number') this.#timers.delete(id);
  }

  /** Timers scheduled and not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Moves time forward by `ms`, firing every timer due by then in time order (equal times
   * in the order they were set). `now()` reads each timer's own due time while it runs,
   * and timers it sets are fired too when they fall inside the window.
   *
   * @returns how many timers fired
   */
  advance(ms: number): number {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`advance(ms) needs a finite ms >= 0, got ${ms}`);
    const end = this.#now + ms;
    let fired = 0;
    for (;;) {
      const due = this.#nextDue(end);
      if (due === undefined) break;
      this.#timers.delete(due.id);
      this.#now = due.at;
      fired++;
      due.callback();
    }
    this.#now = end;
    return fired;
  }

  #nextDue(end: number): Timer | undefined {
    let best: Timer | undefined;
    for (const t of this.#timers.values()) {
      if (t.at > end) continue;
      if (best === undefined || t.at < best.at || (t.at === best.at && t.id < best.id)) best = t;
    }
    return best;
  }
}
