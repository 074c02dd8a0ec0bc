/**
 * EMULATION of a device with a fixed capacity, for measurements only.
 *
 * A network HSM serves a fixed number of commands at once ("engines") and each takes
 * about a fixed time. SoftHSM on this 2-core machine has neither limit that matters: the
 * CPU is the limit, shared by everything. With this emulator a member host runs each
 * command through `engines` slots and holds the slot for at least `serviceTimeMs` from
 * the command's start (on a slot a late timer freed, from when it was due to free up:
 * see `#pump`), so one member behaves like a device of known capacity
 * (`engines / serviceTimeMs` commands per millisecond at most) and scaling across members
 * can be measured past what this machine's cores would allow.
 */
import { systemClock, type Clock } from '../clock/clock.js';
import type { EmulatedCapacity } from './host-ipc.js';

interface Job {
  /** When it was queued (clock time). */
  readonly queuedAt: number;
  readonly work: () => Promise<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * EMULATION: runs work through a fixed number of engine slots, each held for at least the
 * service time. Not a model of any real token's behaviour beyond capacity.
 *
 * @example
 * const device = new CapacityEmulator({ engines: 2, serviceTimeMs: 5 });
 * const signature = await device.run(() => transport.execute(signCommand));
 * device.maxBusy; // never above 2
 */
export class CapacityEmulator {
  /** Slots that run commands at once. */
  readonly engines: number;
  /** Least time, in ms from its start, that a command holds its slot. */
  readonly serviceTimeMs: number;
  readonly #clock: Clock;
  readonly #queue: Job[] = [];
  #busy = 0;
  #maxBusy = 0;

  /**
   * @param capacity engines (a positive integer) and service time (ms, >= 0)
   * @param clock @default systemClock
   * @throws RangeError on an invalid capacity (the value is echoed)
   */
  constructor(capacity: EmulatedCapacity, clock: Clock = systemClock) {
    if (!Number.isInteger(capacity.engines) || capacity.engines < 1) {
      throw new RangeError(`emulate.engines must be a positive integer, got ${String(capacity.engines)}`);
    }
    if (typeof capacity.serviceTimeMs !== 'number' || !Number.isFinite(capacity.serviceTimeMs) || capacity.serviceTimeMs < 0) {
      throw new RangeError(`emulate.serviceTimeMs must be a finite number >= 0, got ${String(capacity.serviceTimeMs)}`);
    }
    this.engines = capacity.engines;
    this.serviceTimeMs = capacity.serviceTimeMs;
    this.#clock = clock;
  }

  /** Slots held now (running, or holding for the rest of their service time). */
  get busy(): number {
    return this.#busy;
  }

  /** The most slots held at once so far. */
  get maxBusy(): number {
    return this.#maxBusy;
  }

  /** Work waiting for a slot. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Runs `work` when a slot is free; settles as `work` did, once the slot's service time
   * has passed.
   */
  run<T>(work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ queuedAt: this.#clock.now(), work, resolve: resolve as (value: unknown) => void, reject });
      this.#pump();
    });
  }

  /**
   * Starts queued work on free slots.
   * @param freedAt when the slot just released was due to free up, if its timer released
   *   it: the next command on that slot counts its service time from then (or from when it
   *   was queued, if later), not from the moment the timer ran. A timer fires late when this
   *   process waits for a CPU (17 processes on 2 shared cores: about 1 ms late on average,
   *   up to 10-20 ms), and a device's engines do not wait for its client machine's
   *   scheduler: without this credit, every late timer was capacity lost, and 16 emulated
   *   members measured 8 % below 16 x one member measured alone.
   */
  #pump(freedAt?: number): void {
    let credit = freedAt;
    while (this.#busy < this.engines) {
      const job = this.#queue.shift();
      if (job === undefined) return;
      this.#busy++;
      if (this.#busy > this.#maxBusy) this.#maxBusy = this.#busy;
      const now = this.#clock.now();
      // From when the freed slot was due (a timer may also fire up to a millisecond EARLY:
      // Node's timers run on the event loop's cached millisecond clock), or from when the
      // command came if later; never before either, so capacity is never exceeded.
      const started = credit === undefined ? now : Math.max(credit, job.queuedAt);
      credit = undefined;
      const settle = (finish: () => void): void => {
        const due = started + this.serviceTimeMs;
        const left = due - this.#clock.now();
        const release = (freed?: number): void => {
          this.#busy--;
          finish();
          this.#pump(freed);
        };
        // Released by its timer: the slot was due to free at `due`. Held past it by slow
        // work: it really was busy until now (no credit).
        if (left > 0) this.#clock.setTimeout(() => release(due), left);
        else release();
      };
      let running: Promise<unknown>;
      try {
        running = job.work();
      } catch (error) {
        running = Promise.reject(error);
      }
      running.then(
        (value) => settle(() => job.resolve(value)),
        (error: unknown) => settle(() => job.reject(error)),
      );
    }
  }
}
