/**
 * The one seam for time. Deadlines, heartbeats, recovery intervals and "failed since"
 * all read this, so tests drive time with a fake clock instead of sleeping.
 */

/** An opaque timer handle. */
export type TimerHandle = { readonly __timer: unique symbol } | ReturnType<typeof setTimeout>;

/** Time as the library sees it. */
export interface Clock {
  /** Milliseconds since some fixed origin. */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
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
};
