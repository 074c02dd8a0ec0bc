/**
 * A member's commands in flight: how many (what "least busy" reads, on every call), and a
 * way to wait until every command running at some moment has ended while new ones keep
 * starting (what tells a half-made object from one being made: see
 * `replication/strays.ts`). Commands are counted per epoch; waiting closes the current
 * epoch and resolves once no command of a closed epoch is left.
 */
export class InFlight {
  #epoch = 0;
  /** Commands of every epoch. */
  #count = 0;
  /** Commands of the current epoch. */
  #current = 0;
  /** Commands of closed epochs still running, by epoch. */
  readonly #closed = new Map<number, number>();
  /** Waiters, each for the epochs before its own. */
  #waiters: { readonly before: number; readonly resolve: () => void }[] = [];

  /** Commands running or waiting now. */
  get count(): number {
    return this.#count;
  }

  /** Counts one command in; give what it returns to {@link leave}. */
  enter(): number {
    this.#count++;
    this.#current++;
    return this.#epoch;
  }

  /** Counts one command out. */
  leave(epoch: number): void {
    this.#count--;
    if (epoch === this.#epoch) {
      this.#current--;
      return;
    }
    const left = (this.#closed.get(epoch) ?? 1) - 1;
    if (left > 0) {
      this.#closed.set(epoch, left);
      return;
    }
    this.#closed.delete(epoch);
    this.#wake();
  }

  /** Resolves once every command counted in before this call has been counted out (new ones are not waited for). */
  drained(): Promise<void> {
    if (this.#current === 0 && this.#closed.size === 0) return Promise.resolve();
    if (this.#current > 0) this.#closed.set(this.#epoch, this.#current);
    this.#epoch++;
    this.#current = 0;
    const before = this.#epoch;
    return new Promise((resolve) => {
      this.#waiters.push({ before, resolve });
      this.#wake();
    });
  }

  #wake(): void {
    let oldest = Infinity;
    for (const epoch of this.#closed.keys()) oldest = Math.min(oldest, epoch);
    const ready = this.#waiters.filter((w) => oldest >= w.before);
    if (ready.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => oldest < w.before);
    for (const w of ready) w.resolve();
  }
}
