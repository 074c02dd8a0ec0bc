/**
 * What a multi-part operation keeps so that another member can take it up: the parts sent
 * so far (copies: the caller may reuse its buffers) and the output already returned (to
 * check the replay's against: the buffers given to the caller, or copies when the output
 * went into the caller's own buffer). Bounded twice: per operation, and for the whole group by a
 * shared {@link ReplayBudget}, so that many open operations cannot hold unbounded memory.
 * Past either bound the operation keeps nothing more and can no longer be replayed.
 */
import type { VirtualObject } from '../catalog/catalog.js';

/**
 * Bytes of one slab: what operations keep is copied into slabs of this size, reused from
 * operation to operation. A fresh buffer per part cost its allocation, the page faults of
 * new memory and the collector's work, about 4 times the copy itself (SHA-256 over 1 MiB
 * in 64 KiB parts: +30 % against +7 % into warm slabs).
 */
export const SLAB_BYTES = 64 * 1024;

/** Bytes all operations of a group may keep at once, and the slabs they keep them in. */
export class ReplayBudget {
  readonly #limit: number;
  #used = 0;
  /** Slabs given back, for the next operation: at most `limit` bytes of them. */
  readonly #free: Buffer[] = [];

  /** @param limit bytes, for all operations together */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** The bound, in bytes. */
  get limit(): number {
    return this.#limit;
  }

  /** Bytes kept now. */
  get used(): number {
    return this.#used;
  }

  /** Takes `bytes` if they fit. */
  take(bytes: number): boolean {
    if (this.#used + bytes > this.#limit) return false;
    this.#used += bytes;
    return true;
  }

  /** Gives `bytes` back. */
  give(bytes: number): void {
    this.#used -= bytes;
  }

  /** A slab to copy into: a reused one when there is one. */
  slab(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES);
  }

  /** Takes slabs back for reuse, as many as the bound allows; the rest go to the collector. */
  recycle(slabs: readonly Buffer[]): void {
    for (const slab of slabs) {
      if ((this.#free.length + 1) * SLAB_BYTES > this.#limit) return;
      this.#free.push(slab);
    }
  }
}

/** One kept part: data, or a key given to C_DigestKey. */
export type KeptPart = { readonly data: Buffer } | { readonly key: VirtualObject };

/** Bytes copied into a run of slabs, as views of them (a piece never spans two slabs). */
class SlabWriter {
  readonly slabs: Buffer[] = [];
  #at = SLAB_BYTES;

  /** Copies `bytes` and gives the pieces they landed in, in order. */
  write(budget: ReplayBudget, bytes: Buffer, pieces: (piece: Buffer) => void): void {
    let from = 0;
    while (from < bytes.length) {
      if (this.#at === SLAB_BYTES) {
        this.slabs.push(budget.slab());
        this.#at = 0;
      }
      const slab = this.slabs[this.slabs.length - 1]!;
      const n = bytes.copy(slab, this.#at, from, Math.min(bytes.length, from + SLAB_BYTES - this.#at));
      pieces(slab.subarray(this.#at, this.#at + n));
      this.#at += n;
      from += n;
    }
  }

  /** Gives the slabs back to `budget`. */
  clear(budget: ReplayBudget): void {
    budget.recycle(this.slabs);
    this.slabs.length = 0;
    this.#at = SLAB_BYTES;
  }
}

/**
 * The parts and output one operation kept. A part larger than what is left of a slab is
 * kept as two pieces (or more), replayed as two Updates: the same stream to the token.
 */
export class ReplayBuffer {
  readonly #budget: ReplayBudget;
  readonly #limit: number;
  #parts: KeptPart[] = [];
  #output: Buffer[] = [];
  readonly #partSlabs = new SlabWriter();
  #bytes = 0;
  #overflowed = false;

  /**
   * @param limit bytes this operation may keep
   * @param budget the group's bound, shared
   */
  constructor(limit: number, budget: ReplayBudget) {
    this.#limit = limit;
    this.#budget = budget;
  }

  /** False once a part or an output did not fit: the operation can no longer be replayed. */
  get complete(): boolean {
    return !this.#overflowed;
  }

  /** Bytes kept now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The parts kept, in order (a part may be kept as several pieces). */
  get parts(): readonly KeptPart[] {
    return this.#parts;
  }

  /** The output returned so far, in one buffer. */
  output(): Buffer {
    return Buffer.concat(this.#output);
  }

  /**
   * Keeps a part that succeeded (a copy: the caller may reuse its buffer) and the output it gave.
   * @param copyOutput the output is in the caller's own buffer (which it may reuse): keep a copy
   */
  keep(part: KeptPart, output?: Buffer, copyOutput = false): void {
    if (this.#overflowed) return;
    const size = ('data' in part ? part.data.length : 0) + (output?.length ?? 0);
    if (this.#bytes + size > this.#limit || !this.#budget.take(size)) {
      this.release();
      this.#overflowed = true;
      return;
    }
    this.#bytes += size;
    if ('data' in part) this.#partSlabs.write(this.#budget, part.data, (data) => this.#parts.push({ data }));
    else this.#parts.push(part);
    // An output the slot gave (a buffer of its own) is kept as is: a caller that changes it
    // later makes a replay's check fail (a restart error), never pass wrongly. One written
    // into the caller's buffer is copied: streaming callers reuse that buffer for the next
    // part, and a failed check would make every such replay a restart. The parts are
    // copied: a part changed after its step would replay as other data.
    if (output === undefined || output.length === 0) return;
    if (copyOutput) this.#partSlabs.write(this.#budget, output, (piece) => this.#output.push(piece));
    else this.#output.push(output);
  }

  /**
   * Drops what is kept and gives its bytes back to the group; nothing is kept after it (a
   * step that ends after its operation was closed must not take bytes never given back).
   * Idempotent.
   */
  release(): void {
    this.#overflowed = true;
    this.#budget.give(this.#bytes);
    this.#bytes = 0;
    this.#parts = [];
    this.#output = [];
    this.#partSlabs.clear(this.#budget);
  }
}
