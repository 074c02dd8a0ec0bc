/**
 * The peak-EWMA power-of-two-choices scheduler: tables of members (latency estimate and
 * outstanding count) and the picks they must give, the estimate's peak and decay on the
 * fake clock, then properties over random groups and simulated closed-loop pools. No test
 * waits in real time.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PeakEwmaScheduler, seededRandom } from '../../src/routing/peak-ewma-scheduler.js';
import { LeastBusyScheduler } from '../../src/routing/least-busy-scheduler.js';
import type { Candidate, Scheduler } from '../../src/routing/scheduler.js';
import { FakeClock } from '../helpers/fake-clock.js';

interface Slot extends Candidate {
  outstanding: number;
}

/**
 * Members in one string, one word each: `<latency>/<outstanding>`, with `-` for a member
 * never measured. `'1/0 5/2 -/0'`: 1 ms and idle, 5 ms with 2 outstanding, unmeasured.
 * Each measured member gets one sample of its latency at the clock's current time.
 */
function pool(spec: string, scheduler: PeakEwmaScheduler): Slot[] {
  return spec.split(/\s+/).map((word, index) => {
    const m = /^(-|\d+(?:\.\d+)?)\/(\d+)$/.exec(word);
    if (!m) throw new Error(`bad member word ${JSON.stringify(word)}`);
    if (m[1] !== '-') scheduler.observe(index, Number(m[1]), true);
    return { index, outstanding: Number(m[2]) };
  });
}

/** A random source that returns the given numbers in turn (then repeats the last). */
function sequence(values: readonly number[]): () => number {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)] ?? 0;
}

describe('peak-EWMA scheduler: picks by table', () => {
  // Loads stay as written: each pick is a look at the same pool.
  it.each([
    { members: '1/0 1/0 1/0', random: [0.9], picks: [0, 1, 2, 0, 1, 2, 0] },
    { members: '-/0 -/0 -/0 -/0', random: [0.5], picks: [0, 1, 2, 3, 0] },
    { members: '1/0 -/0 1/0', random: [0.1], picks: [0, 1, 2, 0] },
    { members: '1/0 5/0', random: [0], picks: [0, 0, 0, 0] },
    { members: '5/0 1/0', random: [0], picks: [1, 1, 1] },
    { members: '1/0 1.1/0', random: [0], picks: [0, 1, 0, 1] },
    { members: '1/0 1.3/0', random: [0], picks: [0, 0, 0] },
    { members: '1/3 1/0 1/0', random: [0], picks: [1, 1, 2, 1] },
    { members: '1/3 1/0 1/0', random: [0.9], picks: [2, 1, 2, 2] },
    { members: '2/0 1/1', random: [0], picks: [0, 1, 0, 1] }, // 2 ms idle = 1 ms with one outstanding: a tie, the turn stands
    { members: '1/0', random: [0.5], picks: [0, 0] },
  ])('$members with random $random gives $picks', ({ members, random, picks }) => {
    const scheduler = new PeakEwmaScheduler({ clock: new FakeClock(), random: sequence(random) });
    const p = pool(members, scheduler);
    expect(picks.map(() => scheduler.pick(p)?.index)).toEqual(picks);
  });

  // Each pick adds one outstanding command to the member it picked, as Member.run does.
  it.each([
    { members: '1/0 1/0 1/0', random: [0.3], picks: [0, 1, 2, 0, 1, 2] },
    { members: '-/0 -/0', random: [0], picks: [0, 1, 0, 1] },
    // The slow member is passed over until the fast one has ~5x its outstanding commands.
    { members: '1/0 5/0', random: [0], picks: [0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0] },
    { members: '1/2 1/0 1/0', random: [0], picks: [1, 1, 2, 0, 1, 2] },
  ])('$members with load added by each pick gives $picks', ({ members, random, picks }) => {
    const scheduler = new PeakEwmaScheduler({ clock: new FakeClock(), random: sequence(random) });
    const p = pool(members, scheduler);
    const got = picks.map(() => {
      const pick = scheduler.pick(p);
      if (pick) pick.outstanding++;
      return pick?.index;
    });
    expect(got).toEqual(picks);
  });

  it('never picks from no candidates', () => {
    expect(new PeakEwmaScheduler({ clock: new FakeClock() }).pick([])).toBeUndefined();
  });

  it('rejects a decay that is not positive and a negative tolerance, echoing the value', () => {
    expect(() => new PeakEwmaScheduler({ decayMs: 0 })).toThrow(/decayMs.*got 0/);
    expect(() => new PeakEwmaScheduler({ decayMs: Number.NaN })).toThrow(/decayMs.*got NaN/);
    expect(() => new PeakEwmaScheduler({ tolerance: -0.1 })).toThrow(/tolerance.*got -0.1/);
  });
});

describe('peak-EWMA scheduler: the estimate on the fake clock', () => {
  const tau = 1000;
  const make = () => {
    const clock = new FakeClock();
    return { clock, scheduler: new PeakEwmaScheduler({ clock, decayMs: tau, random: seededRandom(1) }) };
  };

  it.each([
    // [ms since the previous sample, sample, ok] ... and the estimate after each.
    { name: 'the first sample is the estimate', steps: [[0, 4, true]], estimates: [4] },
    { name: 'a slower sample replaces it at once (the peak)', steps: [[0, 1, true], [1, 10, true]], estimates: [1, 10] },
    { name: 'a faster sample at the same instant changes nothing', steps: [[0, 10, true], [0, 1, true]], estimates: [10, 10] },
    {
      name: 'a faster sample one time constant later moves it by 1 - 1/e',
      steps: [[0, 10, true], [tau, 1, true]],
      estimates: [10, 10 * Math.exp(-1) + 1 * (1 - Math.exp(-1))],
    },
    {
      name: 'decay follows time, not the number of samples',
      steps: [[0, 10, true], [tau / 2, 1, true], [tau / 2, 1, true]],
      estimates: [10, 10 * Math.exp(-0.5) + (1 - Math.exp(-0.5)), 10 * Math.exp(-1) + 1 * (1 - Math.exp(-1))],
    },
    { name: 'a fast failure never lowers it', steps: [[0, 8, true], [5 * tau, 0.1, false]], estimates: [8, 8] },
    { name: 'a slow failure counts as a peak', steps: [[0, 2, true], [1, 9, false]], estimates: [2, 9] },
  ] as { name: string; steps: [number, number, boolean][]; estimates: number[] }[])('$name', ({ steps, estimates }) => {
    const { clock, scheduler } = make();
    const got = steps.map(([dt, sample, ok]) => {
      clock.advance(dt);
      scheduler.observe(0, sample, ok);
      return scheduler.estimate(0)!;
    });
    got.forEach((g, i) => expect(g).toBeCloseTo(estimates[i]!, 9));
  });

  it('ignores samples that are not finite non-negative numbers', () => {
    const { scheduler } = make();
    scheduler.observe(0, 3, true);
    for (const bad of [Number.NaN, -1, Number.POSITIVE_INFINITY]) scheduler.observe(0, bad, true);
    expect(scheduler.estimate(0)).toBe(3);
    expect(scheduler.estimate(1)).toBeUndefined();
    expect(scheduler.estimate(-1)).toBeUndefined();
  });

  it('grows past 16 members', () => {
    const { scheduler } = make();
    scheduler.observe(40, 2, true);
    expect(scheduler.estimate(40)).toBe(2);
    const members = Array.from({ length: 41 }, (_, index) => ({ index, outstanding: index === 40 ? 0 : 5 }));
    expect(scheduler.pick(members)).toBeDefined();
  });

  // A member passed over because it looked slow relaxes toward the best estimate and gets
  // its turn again; one slow sample sends it back at once.
  it.each([
    { at: 0, pick: 0 },
    { at: tau, pick: 0 }, // 1 + 4/e = 2.47 ms: still dearer than 1 ms
    { at: 2 * tau, pick: 0 }, // 1.54 ms
    { at: 3 * tau, pick: 1 }, // 1.20 ms: within the tolerance, its turn stands
  ])('a 5 ms member idle for $at ms against a fresh 1 ms one: its turn goes to $pick', ({ at, pick }) => {
    const { clock, scheduler } = make();
    scheduler.observe(1, 5, true);
    scheduler.observe(0, 1, true);
    const members = [
      { index: 0, outstanding: 0 },
      { index: 1, outstanding: 0 },
    ];
    scheduler.pick(members); // member 0's turn; member 1's is next
    clock.advance(at);
    scheduler.observe(0, 1, true); // the fast member stays measured
    expect(scheduler.pick(members)!.index).toBe(pick);
    if (pick === 1) {
      scheduler.observe(1, 5, true);
      scheduler.pick(members);
      expect(scheduler.pick(members)!.index).toBe(0);
    }
  });
});

// ---------------------------------------------------------------------------------------

/** Sorted unique member indices with outstanding counts: one call's candidates. */
const candidatesArb = fc
  .uniqueArray(fc.nat({ max: 20 }), { minLength: 1, maxLength: 8 })
  .chain((ix) => fc.tuple(...ix.sort((a, b) => a - b).map((index) => fc.record({ index: fc.constant(index), outstanding: fc.nat({ max: 9 }) }))));

/** Earlier samples: [member, latency, ok, ms before it]. */
const historyArb = fc.array(fc.tuple(fc.nat({ max: 20 }), fc.double({ min: 0, max: 50, noNaN: true }), fc.boolean(), fc.nat({ max: 3000 })), { maxLength: 30 });

describe('peak-EWMA scheduler: properties', () => {
  it('never picks outside the candidates (and returns the candidate object itself)', () => {
    fc.assert(
      fc.property(candidatesArb, historyArb, fc.integer(), fc.nat({ max: 5000 }), (candidates, history, seed, later) => {
        const clock = new FakeClock();
        const scheduler = new PeakEwmaScheduler({ clock, random: seededRandom(seed) });
        for (const [index, latency, ok, dt] of history) {
          clock.advance(dt);
          scheduler.observe(index, latency, ok);
        }
        clock.advance(later);
        for (let i = 0; i < 10; i++) expect(candidates).toContain(scheduler.pick(candidates));
      }),
    );
  });

  it('under equal load and equal latencies, n*k picks are strict round-robin (the reference behaviour)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.nat({ max: 12 }), { minLength: 1, maxLength: 7 }),
        fc.nat({ max: 5 }),
        fc.option(fc.double({ min: 0.01, max: 100, noNaN: true }), { nil: undefined }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer(),
        (indices, load, latency, k, seed) => {
          indices.sort((a, b) => a - b);
          const scheduler = new PeakEwmaScheduler({ clock: new FakeClock(), random: seededRandom(seed) });
          if (latency !== undefined) for (const i of indices) scheduler.observe(i, latency, true);
          const members = indices.map((index) => ({ index, outstanding: load }));
          const picks = Array.from({ length: indices.length * k }, () => scheduler.pick(members)!.index);
          expect(picks).toEqual(Array.from({ length: indices.length * k }, (_, j) => indices[j % indices.length]));
        },
      ),
    );
  });
});

// ---------------------------------------------------------------------------------------

/**
 * A closed-loop pool on the fake clock: `clients` callers, each sending its next command
 * as soon as the previous one completes, to members that each serve one command at a time
 * in FIFO order with the given service time (ms) times a jitter factor from `random`.
 * The scheduler sees queued + running counts and is told every latency, as the router does.
 * @returns the share of commands each member served
 */
function simulate(scheduler: Scheduler, clock: FakeClock, serviceMs: readonly number[], clients: number, commands: number, random: () => number, jitter: number): number[] {
  const queues = serviceMs.map(() => [] as { sent: number }[]);
  const busyUntil = serviceMs.map(() => 0);
  const members: Slot[] = serviceMs.map((_, index) => ({ index, outstanding: 0 }));
  const served = serviceMs.map(() => 0);
  let sent = 0;
  const send = (): void => {
    if (sent >= commands) return;
    sent++;
    const m = scheduler.pick(members)!;
    m.outstanding++;
    queues[m.index]!.push({ sent: clock.now() });
    if (queues[m.index]!.length === 1) start(m.index);
  };
  const start = (i: number): void => {
    const service = serviceMs[i]! * (1 + jitter * (random() - 0.5));
    busyUntil[i] = clock.now() + service;
    clock.setTimeout(() => {
      const done = queues[i]!.shift()!;
      members[i]!.outstanding--;
      served[i]!++;
      scheduler.observe?.(i, clock.now() - done.sent, true);
      if (queues[i]!.length > 0) start(i);
      send();
    }, service);
  };
  for (let c = 0; c < clients; c++) send();
  while (clock.pending > 0) clock.advance(1000);
  const total = served.reduce((a, b) => a + b, 0);
  return served.map((s) => s / total);
}

describe('peak-EWMA scheduler: simulated pools', () => {
  it('with one member 5x slower, the slow one gets clearly less load than its fair share (and less than under least-busy)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 4 }), fc.integer({ min: 2, max: 24 }), fc.integer(), (n, clients, seed) => {
        const service = Array.from({ length: n }, (_, i) => (i === n - 1 ? 5 : 1));
        const clock = new FakeClock();
        const peak = simulate(new PeakEwmaScheduler({ clock, random: seededRandom(seed) }), clock, service, clients, 3000, seededRandom(seed + 1), 0.2);
        const clock2 = new FakeClock();
        const busy = simulate(new LeastBusyScheduler(), clock2, service, clients, 3000, seededRandom(seed + 1), 0.2);
        const slow = peak[n - 1]!;
        expect(slow).toBeLessThan(0.5 / n);
        expect(slow).toBeLessThanOrEqual(busy[n - 1]! + 0.02);
      }),
      { numRuns: 40 },
    );
  });

  it('equal members with jittered service times get equal shares within 5 points', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 1, max: 32 }), fc.double({ min: 0, max: 0.5, noNaN: true }), fc.integer(), (n, clients, jitter, seed) => {
        const clock = new FakeClock();
        const shares = simulate(new PeakEwmaScheduler({ clock, random: seededRandom(seed) }), clock, Array.from({ length: n }, () => 2), clients, 3000, seededRandom(seed + 1), jitter);
        for (const s of shares) expect(Math.abs(s - 1 / n)).toBeLessThan(0.05);
      }),
      { numRuns: 40 },
    );
  });
});
