/**
 * ReplayBuffer and ReplayBudget: parts are copied into reused slabs (a part that crosses a
 * slab's end is kept as two pieces, the same bytes in the same order), outputs are kept as
 * given, both bounds hold, and slabs given back are reused up to the group's bound.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReplayBudget, ReplayBuffer, SLAB_BYTES } from '../../src/slot/replay-buffer.js';

const joined = (b: ReplayBuffer): Buffer => Buffer.concat(b.parts.map((p) => ('data' in p ? p.data : Buffer.alloc(0))));

describe('ReplayBuffer', () => {
  it('keeps copies of the parts, in order, whatever their sizes; the caller may reuse its buffers', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 3 * SLAB_BYTES }), { maxLength: 8 }), (sizes) => {
        const budget = new ReplayBudget(64 * SLAB_BYTES);
        const buffer = new ReplayBuffer(64 * SLAB_BYTES, budget);
        const sent: Buffer[] = [];
        const reused = Buffer.alloc(3 * SLAB_BYTES);
        for (const [i, size] of sizes.entries()) {
          const part = reused.subarray(0, size).fill(i + 1);
          sent.push(Buffer.from(part));
          buffer.keep({ data: part });
        }
        reused.fill(0);
        expect(buffer.complete).toBe(true);
        expect(joined(buffer).equals(Buffer.concat(sent))).toBe(true);
        expect(buffer.parts.every((p) => 'data' in p && p.data.length > 0 && p.data.length <= SLAB_BYTES)).toBe(true);
        expect(budget.used).toBe(buffer.bytes);
        buffer.release();
        expect(budget.used).toBe(0);
      }),
      { numRuns: 20 },
    );
  });

  it('counts outputs against the bound; past it keeps nothing and gives every byte back', () => {
    const budget = new ReplayBudget(10_000);
    const buffer = new ReplayBuffer(1000, budget);
    const out = Buffer.alloc(300, 7);
    buffer.keep({ data: Buffer.alloc(300, 1) }, out);
    expect(buffer.output()).toEqual(out);
    expect(buffer.bytes).toBe(600);
    buffer.keep({ data: Buffer.alloc(300, 2) }, Buffer.alloc(300));
    expect(buffer.complete).toBe(false);
    expect(buffer.parts).toHaveLength(0);
    expect(budget.used).toBe(0);
    buffer.keep({ data: Buffer.alloc(1) });
    expect(buffer.bytes).toBe(0);
  });

  it("copies an output written into the caller's buffer (copyOutput), which the caller may reuse", () => {
    const budget = new ReplayBudget(64 * SLAB_BYTES);
    const buffer = new ReplayBuffer(64 * SLAB_BYTES, budget);
    const out = Buffer.alloc(SLAB_BYTES + 10);
    buffer.keep({ data: Buffer.alloc(SLAB_BYTES + 10, 1) }, out.fill(7), true);
    buffer.keep({ data: Buffer.alloc(5, 2) }, out.subarray(0, 5).fill(8), true);
    out.fill(0);
    expect(buffer.output()).toEqual(Buffer.concat([Buffer.alloc(SLAB_BYTES + 10, 7), Buffer.alloc(5, 8)]));
    expect(budget.used).toBe(2 * (SLAB_BYTES + 10) + 10);
    buffer.release();
    expect(budget.used).toBe(0);
  });

  it('shares the group bound between operations, and reuses slabs up to it', () => {
    const budget = new ReplayBudget(2 * SLAB_BYTES);
    const a = new ReplayBuffer(4 * SLAB_BYTES, budget);
    const b = new ReplayBuffer(4 * SLAB_BYTES, budget);
    a.keep({ data: Buffer.alloc(SLAB_BYTES + 1, 1) });
    b.keep({ data: Buffer.alloc(SLAB_BYTES, 2) });
    expect(a.complete).toBe(true);
    expect(b.complete).toBe(false);
    const slabs = a.parts.map((p) => ('data' in p ? p.data.buffer : undefined));
    expect(new Set(slabs).size).toBe(2);
    a.release();
    expect(budget.used).toBe(0);
    // The next operation copies into a slab given back.
    const c = new ReplayBuffer(4 * SLAB_BYTES, budget);
    c.keep({ data: Buffer.alloc(10, 3) });
    const reused = c.parts[0]!;
    expect('data' in reused && slabs.includes(reused.data.buffer) ? 'reused' : 'fresh').toBe('reused');
    expect('data' in reused && reused.data).toEqual(Buffer.alloc(10, 3));
  });
});
