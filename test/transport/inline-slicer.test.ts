/**
 * The slicer on fake time and a hand-cranked event loop: budgets, order, demand.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InlineSlicer, type SliceTiming } from '../../src/transport/inline-slicer.js';

/** Time moves only when told; "turns" of the loop run only when cranked. */
class FakeLoop implements SliceTiming {
  t = 0;
  readonly turns: (() => void)[] = [];
  now(): number {
    return this.t;
  }
  nextTurn(callback: () => void): void {
    this.turns.push(callback);
  }
  /** Runs the turns scheduled so far (not those they schedule). */
  crank(): void {
    for (const turn of this.turns.splice(0)) turn();
  }
}

describe('InlineSlicer', () => {
  it('lets calls run until the budget is spent, then defers them to the next turn, in order', () => {
    const loop = new FakeLoop();
    const slicer = new InlineSlicer(1, loop);
    expect(slicer.mayRun()).toBe(true);
    loop.t = 0.6;
    expect(slicer.mayRun()).toBe(true);
    loop.t = 1.0;
    expect(slicer.mayRun()).toBe(false);
    const ran: string[] = [];
    slicer.defer(() => ran.push('a'));
    slicer.defer(() => ran.push('b'));
    expect(slicer.waiting).toBe(2);
    // Later calls queue behind the waiting ones even if time went back under budget.
    expect(slicer.mayRun()).toBe(false);
    expect(ran).toEqual([]);
    expect(loop.turns).toHaveLength(1);
    loop.crank();
    expect(ran).toEqual(['a', 'b']);
    expect(slicer.demand).toBe(2);
    expect(slicer.waiting).toBe(0);
  });

  it('a waiting call whose turn comes is run only while the new slice has budget; the rest wait for later turns', () => {
    const loop = new FakeLoop();
    const slicer = new InlineSlicer(1, loop);
    const ran: number[] = [];
    // Each deferred call "takes" 0.4 ms of fake time.
    for (let i = 0; i < 5; i++) {
      slicer.defer(() => {
        ran.push(i);
        loop.t += 0.4;
      });
    }
    loop.crank();
    expect(ran).toEqual([0, 1, 2]); // 0, 0.4, 0.8 < 1; at 1.2 the slice is spent
    expect(slicer.demand).toBe(5);
    loop.crank();
    expect(ran).toEqual([0, 1, 2, 3, 4]);
    expect(slicer.demand).toBe(2);
    loop.crank();
    expect(loop.turns).toHaveLength(0);
  });

  it('one turn is scheduled per slice, and a turn with nothing waiting resets demand to 0', () => {
    const loop = new FakeLoop();
    const slicer = new InlineSlicer(1, loop);
    slicer.mayRun();
    slicer.mayRun();
    expect(loop.turns).toHaveLength(1);
    slicer.defer(() => undefined);
    loop.crank();
    expect(slicer.demand).toBe(1);
    slicer.mayRun();
    loop.crank();
    expect(slicer.demand).toBe(0);
  });

  it('refuses a budget that is not positive', () => {
    expect(() => new InlineSlicer(0)).toThrow(RangeError);
    expect(() => new InlineSlicer(Number.NaN)).toThrow(RangeError);
  });

  it('property: inline time per slice stays under budget + one call, every deferred call runs once, in order', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.05, max: 5, noNaN: true }),
        // A turn of the loop after about one call in ten: runs of calls between turns.
        fc.array(fc.record({ cost: fc.double({ min: 0, max: 2, noNaN: true }), turnAfter: fc.nat(9).map((n) => n === 0) }), { maxLength: 200 }),
        (budget, calls) => {
          const loop = new FakeLoop();
          const slicer = new InlineSlicer(budget, loop);
          const ran: number[] = [];
          const deferred: number[] = [];
          // Inline time of the slice so far, and whether a call started after the budget was spent.
          let inlineInSlice = 0;
          let startedOverBudget = false;
          const run = (i: number): void => {
            if (inlineInSlice >= budget) startedOverBudget = true;
            ran.push(i);
            loop.t += calls[i]!.cost;
            inlineInSlice += calls[i]!.cost;
          };
          const crank = (): void => {
            const turns = loop.turns.splice(0);
            for (const turn of turns) {
              inlineInSlice = 0;
              turn();
            }
          };
          calls.forEach((c, i) => {
            if (slicer.mayRun()) run(i);
            else {
              deferred.push(i);
              slicer.defer(() => run(i));
            }
            if (c.turnAfter) crank();
          });
          for (let n = 0; loop.turns.length > 0 && n < 10_000; n++) crank();
          // Every call ran exactly once; the deferred ones in the order they were deferred.
          expect([...ran].sort((a, b) => a - b)).toEqual(calls.map((_, i) => i));
          expect(ran.filter((i) => deferred.includes(i))).toEqual(deferred);
          // A slice starts a call only while under budget, so it ends before budget + one call.
          expect(startedOverBudget).toBe(false);
          expect(slicer.waiting).toBe(0);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
