/**
 * The one seam for time. Deadlines, heartbeats, recovery intervals and "failed since"
 * all read this, so tests drive time with a fake clock instead of sleeping.
 */

/** An opaque timer handle. */
export type TimerHandle = { readonly __timer: unique symbol } | ReturnType<typeof setTimeout>;

/** Time as the library sees it. */
export interface Clock {
  /** Milliseconds since some fixed origin (monotonic: not a date). */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  /**
   * Wall-clock time, milliseconds since the Unix epoch, for the times events and status
   * carry. A clock without it is read as `Date.now()` when first asked, moving with
   * `now()` after that (so a fake clock's `advance` moves the dates too).
   */
  wallNow?(): number;
}

/** The real clock. Timers are unref'd so that a forgotten one never holds the process open. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(callback, ms) {
    const t = setTimeout(callback, ms);
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
  wallNow: () => Date.now(),
};

/**
 * Reads a clock's wall-clock time (ms since the epoch): its `wallNow`, or `Date.now()`
 * at this call moved by `now()` after it.
 */
export function wallClock(clock: Clock): () => number {
  if (clock.wallNow !== undefined) return () => clock.wallNow!();
  const offset = Date.now() - clock.now();
  return () => offset + clock.now();
}
