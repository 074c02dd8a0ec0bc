import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CommandDeadlines, type DeadlineExpiry } from '../../src/member/command-deadlines.js';
import { FakeClock } from '../helpers/fake-clock.js';

function setup(deadlineMs = 100, ceilingMs = 1000) {
  const clock = new FakeClock();
  const expiries: DeadlineExpiry[] = [];
  const d = new CommandDeadlines({ deadlineMs, ceilingMs, clock, onExpired: (e) => expiries.push(e) });
  return { clock, d, expiries };
}

describe('CommandDeadlines', () => {
  it('a command with no answer expires exactly at its deadline, not a tick before', () => {
    const { clock, d, expiries } = setup();
    d.start();
    clock.advance(99);
    expect(expiries).toEqual([]);
    clock.advance(1);
    expect(expiries).toEqual([{ kind: 'deadline', pendingMs: 100, pending: 1 }]);
  });

  it('an answered command never expires, and its timer re-arms for the next oldest', () => {
    const { clock, d, expiries } = setup();
    const a = d.start();
    clock.advance(60);
    d.start(); // started at 60: due at 160
    d.end(a);
    clock.advance(40); // 100: a's timer fires, b is not due
    expect(expiries).toEqual([]);
    clock.advance(59);
    expect(expiries).toEqual([]);
    clock.advance(1);
    expect(expiries).toEqual([{ kind: 'deadline', pendingMs: 100, pending: 1 }]);
  });

  it('each heartbeat extends every pending deadline by deadlineMs from the heartbeat', () => {
    const { clock, d, expiries } = setup(100, 10_000);
    d.start();
    for (let i = 0; i < 20; i++) {
      clock.advance(90);
      d.heartbeat();
    }
    expect(expiries).toEqual([]); // 1800 ms pending, alive all along
    clock.advance(99);
    expect(expiries).toEqual([]);
    clock.advance(1);
    expect(expiries).toMatchObject([{ kind: 'deadline', pendingMs: 1900 }]);
  });

  it('the ceiling bounds a command even with heartbeats', () => {
    const { clock, d, expiries } = setup(100, 500);
    d.start();
    for (let t = 0; t < 480; t += 80) {
      clock.advance(80);
      d.heartbeat();
    }
    expect(expiries).toEqual([]);
    clock.advance(20); // 500
    expect(expiries).toEqual([{ kind: 'ceiling', pendingMs: 500, pending: 1 }]);
  });

  it('a heartbeat before a command started does not shorten or lengthen its own deadline', () => {
    const { clock, d, expiries } = setup();
    d.heartbeat();
    clock.advance(50);
    d.start();
    clock.advance(99);
    expect(expiries).toEqual([]);
    clock.advance(1);
    expect(expiries).toHaveLength(1);
  });

  it('clear forgets pending commands and cancels the timer', () => {
    const { clock, d, expiries } = setup();
    d.start();
    d.clear();
    expect(clock.pending).toBe(0);
    clock.advance(10_000);
    expect(expiries).toEqual([]);
    expect(d.pending).toBe(0);
  });

  it('property: expiry happens iff some command stayed unanswered past its deadline or ceiling, and at the first such time', () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('start' as const) }),
      fc.record({ kind: fc.constant('end' as const), which: fc.nat() }),
      fc.record({ kind: fc.constant('beat' as const) }),
      fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 1, max: 150 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 10, max: 200 }), fc.integer({ min: 10, max: 600 }), fc.array(step, { maxLength: 60 }), (deadlineMs, ceilingMs, steps) => {
        const { clock, d, expiries } = setup(deadlineMs, ceilingMs);
        // A model: each pending command's start; the last heartbeat.
        const model = new Map<number, number>();
        let beat = -Infinity;
        const dueAt = () => Math.min(...[...model.values()].map((s) => Math.min(s + ceilingMs, Math.max(s, beat) + deadlineMs)));
        for (const s of steps) {
          if (expiries.length > 0) break;
          if (s.kind === 'start') model.set(d.start(), clock.now());
          else if (s.kind === 'end') {
            const tickets = [...model.keys()];
            if (tickets.length === 0) continue;
            const t = tickets[s.which % tickets.length]!;
            d.end(t);
            model.delete(t);
          } else if (s.kind === 'beat') {
            d.heartbeat();
            beat = clock.now();
          } else {
            // Advance one ms at a time so that the first due moment is observed exactly.
            for (let i = 0; i < s.ms && expiries.length === 0; i++) {
              clock.advance(1);
              const due = model.size > 0 && clock.now() >= dueAt();
              expect(expiries.length > 0).toBe(due);
            }
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});
