/**
 * The least-busy scheduler composed with the router's filter, as the router uses them:
 * `scheduler.pick(eligible(members, holds))`. Tables first (members and the picks they
 * must give), then properties over random groups.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LeastBusyScheduler } from '../../src/routing/least-busy-scheduler.js';
import { Router } from '../../src/routing/router.js';
import { eligible, type RoutableMember, type Scheduler } from '../../src/routing/scheduler.js';
import { Member } from '../../src/member/member.js';
import type { MemberRole } from '../../src/member/member-state.js';
import type { Command, CommandName, CommandResult } from '../../src/pkcs11/commands.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { CommandFailedError, type TokenInfo, type Transport } from '../../src/transport/transport.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** A member as the router's filter sees it, plus whether it holds the key. */
interface Fake extends RoutableMember {
  outstanding: number;
  readonly holds: boolean;
}

/**
 * Members in one string, one word each: `A`/`S` an active/standby member that serves,
 * `a`/`s` one that does not (failed); then its outstanding count; a trailing `-` when it
 * does not hold the key. `'A2 a0 S0-'`: active with 2 outstanding, a failed active one, a
 * standby one without the key.
 */
function group(spec: string): Fake[] {
  return spec.split(/\s+/).map((word, index) => {
    const m = /^([AaSs])(\d+)(-?)$/.exec(word);
    if (!m) throw new Error(`bad member word ${JSON.stringify(word)}`);
    const [, letter, load, noKey] = m as unknown as [string, string, string, string];
    return {
      index,
      role: (letter.toUpperCase() === 'A' ? 'active' : 'standby') as MemberRole,
      serving: letter === letter.toUpperCase(),
      outstanding: Number(load),
      holds: noKey === '',
    };
  });
}

/** What the router does: filter, then let the scheduler pick (never with no candidates). */
function pickFrom(scheduler: Scheduler, members: readonly Fake[]): Fake | undefined {
  const candidates = eligible(members, (m) => m.holds);
  return candidates.length > 0 ? scheduler.pick(candidates) : undefined;
}

describe('least-busy scheduler: picks by table', () => {
  // Loads stay as written: each pick is a look at the same group.
  it.each([
    { members: 'A0 A0 A0', picks: [0, 1, 2, 0, 1, 2, 0] },
    { members: 'A1 A1 A1 A1', picks: [0, 1, 2, 3, 0] },
    { members: 'A3 A0 A0', picks: [1, 2, 1, 2] },
    { members: 'A0 A5 A0', picks: [0, 2, 0, 2] },
    { members: 'A2 A1 A3', picks: [1, 1, 1] },
    { members: 'A0 a0 A0', picks: [0, 2, 0, 2] },
    { members: 'A0 A0- A0', picks: [0, 2, 0, 2] },
    { members: 'A9 S0 S0', picks: [0, 0, 0] },
    { members: 'a0 S1 S0', picks: [2, 2] },
    { members: 'A0- S0 S0', picks: [1, 2, 1] },
    { members: 'a0 A0- S0- S0', picks: [3, 3] },
    { members: 'a0 s0 A0-', picks: [undefined, undefined] },
    { members: 'A0', picks: [0, 0, 0] },
  ])('$members gives $picks', ({ members, picks }) => {
    const scheduler = new LeastBusyScheduler();
    const g = group(members);
    expect(picks.map(() => pickFrom(scheduler, g)?.index)).toEqual(picks);
  });

  // Each pick adds one outstanding command to the member it picked, as Member.run does.
  it.each([
    { members: 'A0 A0 A0', picks: [0, 1, 2, 0, 1, 2] },
    { members: 'A2 A0 A0', picks: [1, 2, 1, 2, 0, 1, 2] },
    { members: 'A0 A3 A1', picks: [0, 2, 0, 2, 0, 1, 2] },
    { members: 'A1 a0 A0 S0', picks: [2, 0, 2, 0] },
    { members: 'A0- S0 S2', picks: [1, 1, 2, 1, 2] },
  ])('$members with load added by each pick gives $picks', ({ members, picks }) => {
    const scheduler = new LeastBusyScheduler();
    const g = group(members);
    const got = picks.map(() => {
      const p = pickFrom(scheduler, g);
      if (p) p.outstanding++;
      return p?.index;
    });
    expect(got).toEqual(picks);
  });

  // One scheduler over a changing group: the turn continues after the last pick, wherever
  // the candidates are.
  it.each([
    {
      name: 'a member that stops serving is skipped, and the turn goes on past it',
      steps: [['A0 A0 A0', 0], ['A0 a0 A0', 2], ['A0 A0 A0', 0], ['A0 A0 A0', 1]],
    },
    {
      name: 'after standby members served, the turn goes on from the last one picked',
      steps: [['A0 A0 S0 S0', 0], ['a0 a0 S0 S0', 2], ['A0 A0 S0 S0', 0], ['A0 A0 S0 S0', 1]],
    },
    {
      name: 'a busy member rejoins the turn when its load drops',
      steps: [['A0 A0 A0', 0], ['A0 A4 A0', 2], ['A0 A4 A0', 0], ['A0 A0 A0', 1], ['A0 A0 A0', 2]],
    },
    {
      name: 'when the key moves, only its holders are picked',
      steps: [['A0 A0- A0', 0], ['A0 A0- A0', 2], ['A0- A0 A0-', 1], ['A0 A0 A0', 2]],
    },
  ] as { name: string; steps: [string, number][] }[])('$name', ({ steps }) => {
    const scheduler = new LeastBusyScheduler();
    const got = steps.map(([members]) => pickFrom(scheduler, group(members))?.index);
    expect(got).toEqual(steps.map(([, pick]) => pick));
  });

  it('eligible without `holds` takes every serving member, active before standby', () => {
    expect(eligible(group('A0 a0 S0 A1-')).map((m) => m.index)).toEqual([0, 3]);
    expect(eligible(group('a0 S0 s0 S1')).map((m) => m.index)).toEqual([1, 3]);
    expect(eligible(group('a0 s0'))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------

const memberArb = fc.record({
  role: fc.constantFrom<MemberRole>('active', 'standby'),
  serving: fc.boolean(),
  outstanding: fc.nat({ max: 6 }),
  holds: fc.boolean(),
});

const groupArb = fc.array(memberArb, { minLength: 1, maxLength: 8 }).map((ms) => ms.map((m, index): Fake => ({ ...m, index })));

/**
 * Earlier picks that moved the cursor: each one picks the lone candidate with that index.
 * Generated as data, turned into a scheduler inside the property, so that fast-check can
 * replay a case (a scheduler object would keep its cursor between runs).
 */
const historyArb = fc.array(fc.nat({ max: 9 }), { maxLength: 6 });

/** A scheduler after `history`, and the cursor it must have now: one past the last pick. */
function warm(history: readonly number[]): { scheduler: LeastBusyScheduler; cursor: number } {
  const scheduler = new LeastBusyScheduler();
  let cursor = 0;
  for (const i of history) cursor = scheduler.pick([{ index: i, outstanding: 0 }])!.index + 1;
  return { scheduler, cursor };
}

describe('least-busy scheduler: properties of eligible + pick', () => {
  it('(a) picks an eligible member with the least outstanding commands', () => {
    fc.assert(
      fc.property(groupArb, historyArb, (members, history) => {
        const { scheduler } = warm(history);
        const candidates = eligible(members, (m) => m.holds);
        const pick = pickFrom(scheduler, members);
        if (candidates.length === 0) return pick === undefined;
        expect(candidates).toContain(pick);
        expect(pick!.outstanding).toBe(Math.min(...candidates.map((c) => c.outstanding)));
        return true;
      }),
    );
  });

  it('(b) under equal load, n*k picks over n candidates are strict round-robin from the cursor', () => {
    const candidatesArb = fc
      .uniqueArray(fc.nat({ max: 12 }), { minLength: 1, maxLength: 7 })
      .map((ix) => ix.sort((a, b) => a - b));
    fc.assert(
      fc.property(candidatesArb, fc.nat({ max: 5 }), fc.integer({ min: 1, max: 4 }), historyArb, (indices, load, k, history) => {
        const { scheduler, cursor } = warm(history);
        const members: Fake[] = indices.map((index) => ({ index, role: 'active', serving: true, outstanding: load, holds: true }));
        const n = members.length;
        const picks = Array.from({ length: n * k }, () => pickFrom(scheduler, members)!.index);
        // The turn starts at the first candidate at or after the cursor, else wraps to the first.
        const start = Math.max(0, indices.findIndex((i) => i >= cursor));
        const expected = Array.from({ length: n * k }, (_, j) => indices[(start + j) % n]);
        expect(picks).toEqual(expected);
        for (const i of indices) expect(picks.filter((p) => p === i)).toHaveLength(k);
      }),
    );
  });

  it('(c) never a failed member, never one without the key, standby only when no active member holds the key', () => {
    fc.assert(
      fc.property(groupArb, historyArb, fc.integer({ min: 1, max: 10 }), (members, history, times) => {
        const { scheduler } = warm(history);
        const activeHolder = members.some((m) => m.serving && m.holds && m.role === 'active');
        const anyHolder = members.some((m) => m.serving && m.holds);
        for (let t = 0; t < times; t++) {
          const pick = pickFrom(scheduler, members);
          if (!anyHolder) {
            expect(pick).toBeUndefined();
            continue;
          }
          expect(pick).toBeDefined();
          expect(pick!.serving).toBe(true);
          expect(pick!.holds).toBe(true);
          expect(pick!.role).toBe(activeHolder ? 'active' : 'standby');
        }
      }),
    );
  });

  it('(d) with picks adding load and random completions removing it, counts return to zero', () => {
    const stepArb = fc.oneof(
      fc.record({ kind: fc.constant('start' as const) }),
      fc.record({ kind: fc.constant('complete' as const), which: fc.nat() }),
    );
    fc.assert(
      fc.property(groupArb, fc.array(stepArb, { maxLength: 80 }), (initial, steps) => {
        // Start idle: every count here is one this simulation added.
        const members = initial.map((m) => ({ ...m, outstanding: 0 }));
        const scheduler = new LeastBusyScheduler();
        const inFlight: Fake[] = [];
        for (const step of steps) {
          if (step.kind === 'start') {
            const candidates = eligible(members, (m) => m.holds);
            const pick = candidates.length > 0 ? scheduler.pick(candidates) : undefined;
            if (pick === undefined) continue;
            expect(pick.outstanding).toBe(Math.min(...candidates.map((c) => c.outstanding)));
            pick.outstanding++;
            inFlight.push(pick);
          } else if (inFlight.length > 0) {
            inFlight.splice(step.which % inFlight.length, 1)[0]!.outstanding--;
          }
          for (const m of members) expect(m.outstanding).toBe(inFlight.filter((f) => f === m).length);
        }
        while (inFlight.length > 0) inFlight.pop()!.outstanding--;
        expect(members.map((m) => m.outstanding)).toEqual(members.map(() => 0));
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------

/** How a held command ends. */
type Outcome = 'ok' | 'caller' | 'ambiguous' | 'member' | 'drop';

/**
 * A transport whose data commands wait until the test ends them one by one; sessions
 * open and close at once. Lets a property interleave completions freely.
 */
class ManualTransport implements Transport {
  readonly kind = 'manual';
  readonly held: { readonly op: CommandName; readonly resolve: (v: unknown) => void; readonly reject: (e: Error) => void }[] = [];
  #sessions = 0;
  #listeners: ((error: Error) => void)[] = [];

  connect(): Promise<TokenInfo> {
    return Promise.resolve({ slot: Buffer.alloc(8), label: 'manual', serial: '0', manufacturer: 'test', model: 'manual' });
  }

  execute<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    if (command.op === 'openSession') {
      const h = Buffer.alloc(8);
      h.writeUInt32LE(++this.#sessions);
      return Promise.resolve(h as CommandResult<N>);
    }
    if (command.op === 'closeSession') return Promise.resolve(undefined as CommandResult<N>);
    return new Promise((resolve, reject) => this.held.push({ op: command.op, resolve: resolve as (v: unknown) => void, reject }));
  }

  /** Ends the i-th held command. */
  end(i: number, outcome: Outcome): void {
    const [h] = this.held.splice(i, 1);
    if (h === undefined) throw new Error(`no held command ${i}`);
    const failed = (rv: number) => new CommandFailedError({ rv, fn: 'C_GenerateRandom', message: `rv ${rv}` });
    switch (outcome) {
      case 'ok':
        return h.resolve(Buffer.from([1]));
      case 'caller':
        return h.reject(failed(pkcs11js.CKR_MECHANISM_INVALID));
      case 'ambiguous':
        return h.reject(failed(pkcs11js.CKR_GENERAL_ERROR));
      case 'member':
        return h.reject(failed(pkcs11js.CKR_DEVICE_REMOVED));
      case 'drop': {
        const error = new Error('connection lost');
        for (const l of this.#listeners.splice(0)) l(error);
        return h.reject(error);
      }
    }
  }

  get pending(): number {
    return this.held.length;
  }

  onDisconnect(listener: (error: Error) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    for (const h of this.held.splice(0)) h.reject(new Error('closed'));
  }
}

/** Lets every queued promise callback run (no timer, no real time). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('real members under the router: outstanding counts', () => {
  it('(d) return to zero after any interleaving of picks, completions, failures and failover', async () => {
    const stepArb = fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('start' as const) }) },
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant('end' as const),
          which: fc.nat(),
          outcome: fc.constantFrom<Outcome>('ok', 'ok', 'ok', 'caller', 'ambiguous', 'member', 'drop'),
        }),
      },
    );
    const setupArb = fc.record({
      roles: fc.array(fc.constantFrom<MemberRole>('active', 'standby'), { minLength: 1, maxLength: 4 }),
      maxSessions: fc.integer({ min: 1, max: 3 }),
    });
    await fc.assert(
      fc.asyncProperty(setupArb, fc.array(stepArb, { maxLength: 40 }), async ({ roles, maxSessions }, steps) => {
        const clock = new FakeClock();
        const transports = roles.map(() => new ManualTransport());
        const members = roles.map(
          (role, index) =>
            new Member({ name: `m${index}`, index, role, transport: transports[index]!, maxSessions, clock, onStateChange: () => undefined }),
        );
        await Promise.all(members.map((m) => m.connect()));
        const router = new Router({ members, scheduler: new LeastBusyScheduler(), discovery: { resolve: async () => undefined } });
        let unsettled = 0;
        const runs: Promise<unknown>[] = [];
        const start = (): void => {
          unsettled++;
          const p = router.run<'generateRandom'>(undefined, (session) => ({ op: 'generateRandom', session, length: 1 }));
          runs.push(p.then(
            () => unsettled--,
            () => unsettled--,
          ));
        };
        const allHeld = () => transports.flatMap((t) => t.held.map((_, i) => [t, i] as const));
        const check = (): void => {
          const counts = members.map((m) => m.outstanding);
          for (const c of counts) expect(c).toBeGreaterThanOrEqual(0);
          // At rest, every unsettled call is queued or running on exactly one member.
          expect(counts.reduce((a, b) => a + b, 0)).toBe(unsettled);
        };

        for (const step of steps) {
          if (step.kind === 'start') start();
          else {
            const held = allHeld();
            if (held.length > 0) {
              const [t, i] = held[step.which % held.length]!;
              t.end(i, step.outcome);
            }
          }
          await settle();
          check();
        }
        // Finish everything still held; a finished command may let a waiting one in.
        for (let round = 0; unsettled > 0; round++) {
          expect(round).toBeLessThan(1000);
          const held = allHeld();
          expect(held.length).toBeGreaterThan(0);
          for (const [t] of held) t.end(0, 'ok');
          await settle();
        }
        await Promise.all(runs);
        expect(members.map((m) => m.outstanding)).toEqual(members.map(() => 0));
        for (const m of members.filter((x) => x.serving)) {
          const s = m.snapshot().sessions;
          expect(s.waiting).toBe(0);
          expect(s.open).toBe(s.idle);
        }
        await Promise.all(members.map((m) => m.close()));
      }),
      { numRuns: 150 },
    );
  });
});
