/**
 * Slices of the event loop for calls made right on the calling thread ("inline").
 *
 * Why inline at all: on a VM a thread that sleeps takes 0.1-0.4 ms to wake (measured with
 * a bare postMessage round trip), longer than a whole AES or HMAC call on a SoftHSM token
 * key (~30 µs). A call handed to a worker thread pays that wake-up once each way whenever
 * the other side has gone idle, so a lone caller got a tenth of what a sync loop gets.
 *
 * Why slices: a call that resolves at once lets its caller issue the next one in the same
 * microtask checkpoint, so callers in a loop would never let the event loop turn (no
 * timers, no I/O, no worker answers). A slice runs inline calls for at most `budgetMs`;
 * calls that arrive after that wait for the next turn of the loop (a `setImmediate`), so
 * the loop turns at least every `budgetMs` plus one call.
 *
 * The slicer also tells how many callers were waiting when a slice began ({@link demand}):
 * one caller in a loop shows 1; several concurrent callers show more, which is when handing
 * some calls to worker threads adds a core instead of a wake-up per call.
 */

/** How the slicer reads time and reaches the next turn of the loop (tests give fakes). */
export interface SliceTiming {
  /** Milliseconds since some fixed origin. */
  now(): number;
  /** Runs `callback` once on a later turn of the event loop. */
  nextTurn(callback: () => void): void;
  /**
   * CPU time this process has used, in ms (it tells a long call from a descheduled one).
   * Without it, wall time alone decides (fake clocks in tests).
   */
  cpuNow?(): number;
}

/** The real event loop: `performance.now()`, `setImmediate` and `process.cpuUsage()`. */
export const eventLoopTurns: SliceTiming = {
  now: () => performance.now(),
  cpuNow: () => {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1000;
  },
  nextTurn: (callback) => {
    setImmediate(callback);
  },
};

/** Most time inline calls may hold the event loop in one slice (ms). */
export const DEFAULT_SLICE_BUDGET_MS = 1;

/** Shares the event loop between inline calls and everything else. */
export class InlineSlicer {
  /** Most time inline calls may take in one slice (ms). */
  readonly budgetMs: number;
  readonly #timing: SliceTiming;
  readonly #waiting: (() => void)[] = [];
  #sliceEnd = -Infinity;
  #turnScheduled = false;
  #demand = 0;

  constructor(budgetMs: number = DEFAULT_SLICE_BUDGET_MS, timing: SliceTiming = eventLoopTurns) {
    if (!(budgetMs > 0)) throw new RangeError(`budgetMs must be positive, got ${budgetMs}`);
    this.budgetMs = budgetMs;
    this.#timing = timing;
  }

  /** Calls that were waiting when the current slice began (0 before the first wait). */
  get demand(): number {
    return this.#demand;
  }

  /** The slicer's time (ms), for timing inline calls on the same clock. */
  now(): number {
    return this.#timing.now();
  }

  /** Whether {@link cpuNow} reads a CPU clock. */
  get readsCpu(): boolean {
    return this.#timing.cpuNow !== undefined;
  }

  /** CPU time this process has used (ms), on the timing's CPU clock; NaN when it has none. */
  cpuNow(): number {
    return this.#timing.cpuNow?.() ?? Number.NaN;
  }

  /** Calls waiting for the next slice. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Whether a call may run inline now: a slice is open (one is opened if none is) with
   * budget left, and no earlier call is waiting (they go first).
   */
  mayRun(): boolean {
    return this.#waiting.length === 0 && this.#open();
  }

  /**
   * Queues `run` for a later slice, in order. `run` is then called inside a slice with
   * budget left, so it may make its call inline; it must not throw.
   */
  defer(run: () => void): void {
    this.#waiting.push(run);
    this.#scheduleTurn();
  }

  #open(): boolean {
    const now = this.#timing.now();
    if (!this.#turnScheduled) {
      this.#sliceEnd = now + this.budgetMs;
      this.#scheduleTurn();
    }
    return now < this.#sliceEnd;
  }

  #scheduleTurn(): void {
    if (this.#turnScheduled) return;
    this.#turnScheduled = true;
    this.#timing.nextTurn(() => this.#turn());
  }

  /** A new turn of the loop: a new slice, which first serves the calls that waited. */
  #turn(): void {
    this.#turnScheduled = false;
    this.#demand = this.#waiting.length;
    while (this.#waiting.length > 0 && this.#open()) this.#waiting.shift()!();
  }
}

/** The one slicer of this thread: every in-process member shares its event loop. */
export const threadSlicer = new InlineSlicer();
