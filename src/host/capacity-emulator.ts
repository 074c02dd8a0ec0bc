/**
 * EMULATION of a device with a fixed capacity, for measurements only.
 *
 * A network HSM serves a fixed number of commands at once ("engines") and each takes
 * about a fixed time. SoftHSM on this 2-core machine has neither limit that matters: the
 * CPU is the limit, shared by everything. With this emulator a member host runs each
 * command through `engines` slots and holds the slot for at least `serviceTimeMs` from
 * the command's start, so one member behaves like a device of known capacity
 * (`engines / serviceTimeMs` commands per millisecond at most) and scaling across members
 * can be measured past what this machine's cores would allow.
 */
import { systemClock, type Clock } from '../clock/clock.js';
import type { EmulatedCapacity } from './host-ipc.js';

interface Job {
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
      this.#queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#busy < this.engines) {
      const job = this.#queue.shift();
      if (job === undefined) return;
      this.#busy++;
      if (this.#busy > this.#maxBusy) this.#maxBusy = this.#busy;
      const started = this.#clock.now();
      const settle = (finish: () => void): void => {
        const left = started + this.serviceTimeMs - this.#clock.now();
        const release = (): void => {
          this.#busy--;
          finish();
          this.#pump();
        };
        if (left > 0) this.#clock.setTimeout(release, left);
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
