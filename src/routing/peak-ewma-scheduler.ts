/**
 * Power of two choices over a peak-EWMA latency cost, as in Finagle's `PeakEwma` balancer
 * and Linkerd's (tower's) `PeakEwma` load: cost = latency estimate × (outstanding + 1).
 *
 * The latency estimate of a member is a time-decayed moving average that jumps up at once
 * to any slower sample (the "peak") and decays toward faster samples with time constant
 * `decayMs`. Between samples it relaxes, with the same time constant, toward the lowest
 * estimate among the candidates: a member passed over because it looked slow is tried
 * again after a while and measured afresh. (Finagle and tower let it decay toward zero;
 * a long-idle member then looks nearly free and draws a burst of commands, as many as its
 * estimate is below the others', before its first new sample comes back. Relaxing toward
 * the best candidate instead bounds that burst by the outstanding counts, as least-busy
 * would.) An unmeasured member is taken to be as fast as the best measured candidate, so
 * it gets its turn and is measured.
 *
 * The two choices are the member whose round-robin turn it is and one other candidate
 * drawn at random; the challenger wins only when it is clearly cheaper (by more than
 * `tolerance`). So under equal load with equal latencies the picks are Luna's strict
 * round-robin (the reference behaviour the issue asks any default to keep), while a slow
 * or busy member loses its turn to a cheaper one.
 */
import { systemClock, type Clock } from '../clock/clock.js';
import type { Candidate, Scheduler } from './scheduler.js';

/** Options of {@link PeakEwmaScheduler}. Every field is optional. */
export interface PeakEwmaOptions {
  /**
   * Time constant of the decay (ms). Finagle and Linkerd use 10 s for network RPCs; an HSM
   * command lasts 0.05-200 ms and a slow spell (a key generation queued ahead, a noisy
   * neighbour) is short, so a shorter memory lets a member that recovered take its share
   * back sooner while still spanning thousands of commands.
   * @default 1000
   */
  readonly decayMs?: number;
  /**
   * How much cheaper (relative) the random challenger must be to win over the member in
   * turn: costs within this fraction count as equal, so measurement noise between equal
   * members does not break round-robin.
   * @default 0.2
   */
  readonly tolerance?: number;
  /**
   * The clock that times the decay; give the group's clock (the router times commands
   * with it, so both must agree).
   * @default systemClock
   */
  readonly clock?: Clock;
  /**
   * Uniform random numbers in [0, 1) for drawing the challenger. Inject a seeded generator
   * (`seededRandom` of `pkcs11-ha/testing`) for a reproducible sequence.
   * @default Math.random
   */
  readonly random?: () => number;
}

/**
 * A small deterministic generator (mulberry32) of uniform numbers in [0, 1), for tests and
 * benchmarks that must repeat the same picks.
 *
 * @example
 * const scheduler = new PeakEwmaScheduler({ clock, random: seededRandom(42) });
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Initial capacity of the per-member arrays; they grow when a higher index shows up. */
const INITIAL_MEMBERS = 16;

/**
 * Latency-aware power of two choices (peak-EWMA cost), with round-robin as the first
 * choice. Pass it as the group's scheduler; the router reports each command's latency
 * through {@link PeakEwmaScheduler.observe}.
 *
 * @example
 * const clock = systemClock;
 * const group = await HaGroup.open({ members, clock, scheduler: new PeakEwmaScheduler({ clock }) });
 */
export class PeakEwmaScheduler implements Scheduler {
  readonly name = 'peak-ewma';
  readonly #decayMs: number;
  readonly #tolerance: number;
  readonly #clock: Clock;
  readonly #random: () => number;
  /** Latency estimate (ms) per member index, as of #stamp; NaN until the first sample. */
  #estimate = new Float64Array(INITIAL_MEMBERS).fill(Number.NaN);
  /** Clock time of each member's last sample. */
  #stamp = new Float64Array(INITIAL_MEMBERS);
  /** The member index the round-robin turn starts at. */
  #cursor = 0;

  /** @throws {RangeError} when `decayMs` is not a positive number or `tolerance` is negative */
  constructor(options: PeakEwmaOptions = {}) {
    const decayMs = options.decayMs ?? 1000;
    const tolerance = options.tolerance ?? 0.2;
    if (!(decayMs > 0) || !Number.isFinite(decayMs)) throw new RangeError(`decayMs must be a positive number of ms, got ${String(options.decayMs)}`);
    if (!(tolerance >= 0) || !Number.isFinite(tolerance)) throw new RangeError(`tolerance must be a number >= 0, got ${String(options.tolerance)}`);
    this.#decayMs = decayMs;
    this.#tolerance = tolerance;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
  }

  pick<C extends Candidate>(candidates: readonly C[]): C | undefined {
    const n = candidates.length;
    if (n === 0) return undefined;
    // The member in turn: the first candidate at or after the cursor, else the first one.
    let turnAt = 0;
    for (let i = 0; i < n; i++) {
      if (candidates[i]!.index >= this.#cursor) {
        turnAt = i;
        break;
      }
    }
    const turn = candidates[turnAt]!;
    this.#cursor = turn.index + 1;
    if (n === 1) return turn;
    // The challenger: uniform over the other candidates.
    let at = Math.floor(this.#random() * (n - 1));
    if (at >= turnAt) at++;
    const challenger = candidates[Math.min(at, n - 1)]!;

    const now = this.#clock.now();
    const best = this.#lowest(candidates);
    const turnCost = this.#current(turn.index, best, now) * (turn.outstanding + 1);
    const challengerCost = this.#current(challenger.index, best, now) * (challenger.outstanding + 1);
    return challengerCost * (1 + this.#tolerance) < turnCost ? challenger : turn;
  }

  /**
   * Takes one command's latency into member `index`'s estimate: a slower sample than the
   * estimate replaces it at once (the peak); a faster one moves it by the weight of the
   * time since the last sample. A failed command never lowers the estimate, so a member
   * that fails fast does not attract more commands.
   */
  observe(index: number, latencyMs: number, ok: boolean): void {
    if (!(latencyMs >= 0) || !Number.isFinite(latencyMs) || index < 0) return;
    this.#ensure(index);
    const now = this.#clock.now();
    const previous = this.#estimate[index]!;
    let next: number;
    if (!ok) next = Number.isNaN(previous) ? latencyMs : Math.max(latencyMs, previous);
    else if (Number.isNaN(previous) || latencyMs >= previous) next = latencyMs;
    else {
      // The weight of the old estimate shrinks with the time since its last sample, so the
      // decay follows time, not the command rate.
      const w = Math.exp(-Math.max(0, now - this.#stamp[index]!) / this.#decayMs);
      next = previous * w + latencyMs * (1 - w);
    }
    this.#estimate[index] = next;
    this.#stamp[index] = now;
  }

  /**
   * Member `index`'s latency estimate (ms) as of its last sample, or undefined before the
   * first one. For status output and tests.
   */
  estimate(index: number): number | undefined {
    const value = index >= 0 && index < this.#estimate.length ? this.#estimate[index]! : Number.NaN;
    return Number.isNaN(value) ? undefined : value;
  }

  /**
   * The lowest estimate among the measured candidates (as of their last samples), or
   * 1 ms when none is measured: then only the outstanding counts decide, as in least-busy.
   */
  #lowest(candidates: readonly Candidate[]): number {
    let best = Number.POSITIVE_INFINITY;
    for (const c of candidates) {
      const value = c.index < this.#estimate.length ? this.#estimate[c.index]! : Number.NaN;
      if (value < best) best = value; // false for NaN
    }
    return best === Number.POSITIVE_INFINITY ? 1 : best;
  }

  /** Member `index`'s estimate now: relaxed toward `best` since its last sample; `best` when unmeasured. */
  #current(index: number, best: number, now: number): number {
    const value = index < this.#estimate.length ? this.#estimate[index]! : Number.NaN;
    if (Number.isNaN(value)) return best;
    if (value <= best) return value;
    const dt = now - this.#stamp[index]!;
    return dt > 0 ? best + (value - best) * Math.exp(-dt / this.#decayMs) : value;
  }

  /** Grows the arrays to hold member `index` (rare: the group's size is fixed). */
  #ensure(index: number): void {
    if (index < this.#estimate.length) return;
    const size = Math.max(index + 1, this.#estimate.length * 2);
    const estimate = new Float64Array(size).fill(Number.NaN);
    estimate.set(this.#estimate);
    const stamp = new Float64Array(size);
    stamp.set(this.#stamp);
    this.#estimate = estimate;
    this.#stamp = stamp;
  }
}
