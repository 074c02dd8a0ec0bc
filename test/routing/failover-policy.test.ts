/**
 * The failover policy as tables, like undici's balanced-pool tests: the members, the
 * faults injected on each one's next attempts, and the expected sequence of picks, probes,
 * refinds and the outcome. Picks go through the real `eligible` filter and
 * `LeastBusyScheduler`, as the Router's do; the members are fakes that answer from a
 * script, so every row runs in microseconds.
 */
import { describe, expect, it } from 'vitest';
import {
  CommandError,
  DeadlineError,
  HaError,
  InvalidArgumentError,
  MemberUnreachableError,
  NoMemberAvailableError,
  Pkcs11Error,
  ReplicationError,
} from '../../src/errors/ha-error.js';
import { toPkcs11Error } from '../../src/errors/classification.js';
import { ckrValue } from '../../src/errors/return-codes.js';
import { FailoverPolicy, type FailoverMember, type FailoverRun, type FailoverStep, type FailoverPolicyOptions, type PinnedExecution } from '../../src/routing/failover-policy.js';
import { LeastBusyScheduler } from '../../src/routing/least-busy-scheduler.js';
import { eligible, type RoutableMember } from '../../src/routing/scheduler.js';
import type { MemberRole } from '../../src/member/member-state.js';

/** Faults by name; `ok` is an answer. */
type Fault =
  | 'ok'
  | 'removed' // CKR_DEVICE_REMOVED: member
  | 'deviceError' // CKR_DEVICE_ERROR: member
  | 'notPresent' // CKR_TOKEN_NOT_PRESENT: member
  | 'lost' // connection lost: member
  | 'unsent' // transport not connected, command never sent: member
  | 'deadline' // no answer in time: member
  | 'mechanism' // CKR_MECHANISM_INVALID: caller
  | 'pin' // CKR_PIN_INCORRECT: caller
  | 'argument' // InvalidArgumentError: caller
  | 'general' // CKR_GENERAL_ERROR: ambiguous answer
  | 'notLoggedIn' // CKR_USER_NOT_LOGGED_IN: ambiguous answer
  | 'command' // ERR_COMMAND: ambiguous answer
  | 'stale' // CKR_OBJECT_HANDLE_INVALID: ambiguous answer, stale handle
  | 'staleKey' // CKR_KEY_HANDLE_INVALID: ambiguous answer, stale handle
  | 'replication' // ReplicationError: ambiguous, no answer of the member
  | 'bug' // a plain Error: ambiguous, no answer of the member
  | 'raw'; // a raw pkcs11js error, CKR_DEVICE_REMOVED: member

function pkcs11(ckr: string, fault: 'member' | 'caller' | 'ambiguous', member: string): Pkcs11Error {
  return new Pkcs11Error(ckr, ckrValue(ckr)!, 'C_Sign', member, fault);
}

function errorOf(fault: Exclude<Fault, 'ok'>, member: string): unknown {
  switch (fault) {
    case 'removed':
      return pkcs11('CKR_DEVICE_REMOVED', 'member', member);
    case 'deviceError':
      return pkcs11('CKR_DEVICE_ERROR', 'member', member);
    case 'notPresent':
      return pkcs11('CKR_TOKEN_NOT_PRESENT', 'member', member);
    case 'lost':
      return new MemberUnreachableError(member, 'connection lost');
    case 'unsent':
      return new MemberUnreachableError(member, 'not connected', { unsent: true });
    case 'deadline':
      return new DeadlineError(member, 'no answer within 1000 ms');
    case 'mechanism':
      return pkcs11('CKR_MECHANISM_INVALID', 'caller', member);
    case 'pin':
      return pkcs11('CKR_PIN_INCORRECT', 'caller', member);
    case 'argument':
      return new InvalidArgumentError('bad data');
    case 'general':
      return pkcs11('CKR_GENERAL_ERROR', 'ambiguous', member);
    case 'notLoggedIn':
      return pkcs11('CKR_USER_NOT_LOGGED_IN', 'ambiguous', member);
    case 'command':
      return new CommandError(member, 'sign: native failure');
    case 'stale':
      return pkcs11('CKR_OBJECT_HANDLE_INVALID', 'ambiguous', member);
    case 'staleKey':
      return pkcs11('CKR_KEY_HANDLE_INVALID', 'ambiguous', member);
    case 'replication':
      return new ReplicationError('fewer than minReplicas');
    case 'bug':
      return new TypeError('x is undefined');
    case 'raw':
      return Object.assign(new Error('CKR_DEVICE_REMOVED:50'), { code: 0x32 });
  }
}

/** A scripted member: answers its queued faults in order, then `ok`. */
interface Fake extends RoutableMember, FailoverMember {
  outstanding: number;
  /** Faults for its next attempts. */
  readonly faults: Fault[];
  /** Whether a probe finds it sick (it does not answer). */
  readonly sick: boolean;
}

/**
 * Members in one string, one word each: `A`/`S` an active/standby member that serves,
 * `a`/`s` one that does not; a trailing `!` when a probe finds it sick. `'A A! S'`.
 */
function group(spec: string, faults: Record<number, Fault[]>, log: string[]): Fake[] {
  return spec.split(/\s+/).map((word, index) => {
    const m = /^([AaSs])(!?)$/.exec(word);
    if (!m) throw new Error(`bad member word ${JSON.stringify(word)}`);
    const [, letter, sick] = m as unknown as [string, string, string];
    return {
      index,
      name: `m${index}`,
      role: (letter.toUpperCase() === 'A' ? 'active' : 'standby') as MemberRole,
      serving: letter === letter.toUpperCase(),
      outstanding: 0,
      faults: [...(faults[index] ?? [])],
      sick: sick === '!',
      probe: async () => {
        log.push(`probe ${index}`);
        return sick !== '!';
      },
    };
  });
}

/** One attempt on a fake: its next scripted fault, or its index as the answer. */
async function attempt(member: Fake, log: string[]): Promise<number> {
  log.push(`run ${member.index}`);
  const fault = member.faults.shift() ?? 'ok';
  if (fault === 'ok') return member.index;
  throw errorOf(fault, member.name);
}

/** What the caller sees: the answering member, or the error's code and CKR name. */
type Outcome = { answer: number } | { code: string; ckr?: string; cause?: string };

function outcomeOf(error: unknown): Outcome {
  const e = error as { code?: unknown; ckr?: unknown; cause?: unknown };
  const out: { code: string; ckr?: string; cause?: string } = { code: HaError.is(error) ? error.code : `${(error as Error).name}` };
  if (typeof e.ckr === 'string') out.ckr = e.ckr;
  const cause = e.cause as { ckr?: unknown; code?: unknown } | undefined;
  if (cause !== undefined) out.cause = typeof cause.ckr === 'string' ? cause.ckr : String(cause.code);
  return out;
}

describe('failover policy: stateless commands by table (the Router\'s loop)', () => {
  type Row = {
    name: string;
    members: string;
    faults: Record<number, Fault[]>;
    /** Whether the command uses an object (so a stale handle can be found again). @default true */
    object?: boolean;
    options?: FailoverPolicyOptions;
    /** Every attempt, probe and refind, in order. */
    log: string[];
    outcome: Outcome;
  };
  const rows: Row[] = [
    { name: 'no fault: the member in turn answers', members: 'A A A', faults: {}, log: ['run 0'], outcome: { answer: 0 } },
    {
      name: 'CKR_DEVICE_REMOVED moves the command to the next member',
      members: 'A A A',
      faults: { 0: ['removed'] },
      log: ['run 0', 'run 1'],
      outcome: { answer: 1 },
    },
    {
      name: 'a lost connection, then CKR_DEVICE_ERROR: the third member answers',
      members: 'A A A',
      faults: { 0: ['lost'], 1: ['deviceError'] },
      log: ['run 0', 'run 1', 'run 2'],
      outcome: { answer: 2 },
    },
    {
      name: 'a passed deadline and CKR_TOKEN_NOT_PRESENT are member faults',
      members: 'A A A',
      faults: { 0: ['deadline'], 1: ['notPresent'] },
      log: ['run 0', 'run 1', 'run 2'],
      outcome: { answer: 2 },
    },
    {
      name: 'a command never sent (unsent) moves on like any member fault',
      members: 'A A',
      faults: { 0: ['unsent'] },
      log: ['run 0', 'run 1'],
      outcome: { answer: 1 },
    },
    {
      name: 'a raw pkcs11js error is classified by its code',
      members: 'A A',
      faults: { 0: ['raw'] },
      log: ['run 0', 'run 1'],
      outcome: { answer: 1 },
    },
    {
      name: 'a caller fault goes back at once, with no probe',
      members: 'A A A',
      faults: { 0: ['mechanism'] },
      log: ['run 0'],
      outcome: { code: 'ERR_PKCS11', ckr: 'CKR_MECHANISM_INVALID' },
    },
    {
      name: 'a PIN error goes back at once: trying it elsewhere would lock more tokens',
      members: 'A A A',
      faults: { 0: ['pin'] },
      log: ['run 0'],
      outcome: { code: 'ERR_PKCS11', ckr: 'CKR_PIN_INCORRECT' },
    },
    {
      name: 'an invalid argument goes back at once',
      members: 'A A',
      faults: { 0: ['argument'] },
      log: ['run 0'],
      outcome: { code: 'ERR_INVALID_ARGUMENT' },
    },
    {
      name: 'CKR_GENERAL_ERROR from a member that answers its probe goes back (a tampered tag)',
      members: 'A A A',
      faults: { 0: ['general'] },
      log: ['run 0', 'probe 0'],
      outcome: { code: 'ERR_PKCS11', ckr: 'CKR_GENERAL_ERROR' },
    },
    {
      name: 'CKR_GENERAL_ERROR from a member that fails its probe moves on',
      members: 'A! A A',
      faults: { 0: ['general'] },
      log: ['run 0', 'probe 0', 'run 1'],
      outcome: { answer: 1 },
    },
    {
      name: 'CKR_USER_NOT_LOGGED_IN is ambiguous: probed, then back to the caller',
      members: 'A A',
      faults: { 0: ['notLoggedIn'] },
      log: ['run 0', 'probe 0'],
      outcome: { code: 'ERR_PKCS11', ckr: 'CKR_USER_NOT_LOGGED_IN' },
    },
    {
      name: 'ERR_COMMAND (no return code) is an ambiguous answer: probed',
      members: 'A! A',
      faults: { 0: ['command'] },
      log: ['run 0', 'probe 0', 'run 1'],
      outcome: { answer: 1 },
    },
    {
      name: 'an error that is no answer of the member (a bug) goes back unprobed',
      members: 'A A',
      faults: { 0: ['bug'] },
      log: ['run 0'],
      outcome: { code: 'TypeError' },
    },
    {
      name: 'a stale handle is found again once; the next member in turn answers',
      members: 'A A A',
      faults: { 0: ['stale'] },
      log: ['run 0', 'refind 0', 'run 1'],
      outcome: { answer: 1 },
    },
    {
      name: 'a stale key handle on the only member: found again, and the member retried',
      members: 'A',
      faults: { 0: ['staleKey'] },
      log: ['run 0', 'refind 0', 'run 0'],
      outcome: { answer: 0 },
    },
    {
      name: 'a second stale handle is not found again: probed, and back to the caller',
      members: 'A A A',
      faults: { 0: ['stale'], 1: ['stale'] },
      log: ['run 0', 'refind 0', 'run 1', 'probe 1'],
      outcome: { code: 'ERR_PKCS11', ckr: 'CKR_OBJECT_HANDLE_INVALID' },
    },
    {
      name: 'without an object, a refused handle is only ambiguous',
      members: 'A A',
      faults: { 0: ['stale'] },
      object: false,
      log: ['run 0', 'probe 0'],
      outcome: { code: 'ERR_PKCS11', ckr: 'CKR_OBJECT_HANDLE_INVALID' },
    },
    {
      name: 'refinds: 0 gives a stale handle no second look',
      members: 'A A',
      faults: { 0: ['stale'] },
      options: { refinds: 0 },
      log: ['run 0', 'probe 0'],
      outcome: { code: 'ERR_PKCS11', ckr: 'CKR_OBJECT_HANDLE_INVALID' },
    },
    {
      name: 'a member that does not serve is never picked',
      members: 'A a A',
      faults: { 0: ['removed'] },
      log: ['run 0', 'run 2'],
      outcome: { answer: 2 },
    },
    {
      name: 'a standby member serves only once every active one failed under the command',
      members: 'A A S',
      faults: { 0: ['removed'], 1: ['lost'] },
      log: ['run 0', 'run 1', 'run 2'],
      outcome: { answer: 2 },
    },
    {
      name: 'every member fails under the command: no member left, the last failure as cause',
      members: 'A A A',
      faults: { 0: ['removed'], 1: ['lost'], 2: ['deviceError'] },
      log: ['run 0', 'run 1', 'run 2'],
      outcome: { code: 'ERR_NO_MEMBER', cause: 'CKR_DEVICE_ERROR' },
    },
    {
      name: 'maxAttempts 2 stops after the second member',
      members: 'A A A',
      faults: { 0: ['removed'], 1: ['removed'] },
      options: { maxAttempts: 2 },
      log: ['run 0', 'run 1'],
      outcome: { code: 'ERR_NO_MEMBER', cause: 'CKR_DEVICE_REMOVED' },
    },
    {
      name: 'maxAttempts 1 gives a stale handle back as it is',
      members: 'A A',
      faults: { 0: ['stale'] },
      options: { maxAttempts: 1 },
      log: ['run 0'],
      outcome: { code: 'ERR_PKCS11', ckr: 'CKR_OBJECT_HANDLE_INVALID' },
    },
    {
      name: 'a refind and a member fault on each member stay within the default bound',
      members: 'A A',
      faults: { 0: ['stale', 'removed'], 1: ['removed'] },
      log: ['run 0', 'refind 0', 'run 1', 'run 0'],
      outcome: { code: 'ERR_NO_MEMBER', cause: 'CKR_DEVICE_REMOVED' },
    },
  ];

  it.each(rows)('$members, $faults: $name', async (row) => {
    const log: string[] = [];
    const members = group(row.members, row.faults, log);
    const scheduler = new LeastBusyScheduler();
    const excluded: number[] = [];
    const policy = new FailoverPolicy(row.options);
    const outcome = await policy
      .execute<Fake, number>(
        {
          size: members.length,
          pick: (run) => {
            const candidates = eligible(members, (m) => !run.excludes(m.index));
            return candidates.length > 0 ? scheduler.pick(candidates) : undefined;
          },
          refind:
            row.object === false
              ? undefined
              : async (m) => {
                  log.push(`refind ${m.index}`);
                },
          excluded: (m) => excluded.push(m.index),
          none: (cause) => new NoMemberAvailableError('none left', { cause }),
        },
        (m) => attempt(m, log),
      )
      .then(
        (answer): Outcome => ({ answer }),
        (error: unknown) => outcomeOf(error),
      );

    expect(log).toEqual(row.log);
    expect(outcome).toEqual(row.outcome);
    // Every scripted fault was used: no attempt more, none fewer.
    expect(members.map((m) => m.faults)).toEqual(members.map(() => []));
    // The target hears of each member the command moved away from, and of no other.
    const ran = new Set(log.filter((l) => l.startsWith('run ')).map((l) => Number(l.slice(4))));
    if ('answer' in row.outcome) expect(excluded).not.toContain(row.outcome.answer);
    if ('code' in row.outcome && row.outcome.code === 'ERR_NO_MEMBER') expect(new Set(excluded)).toEqual(ran);
    if ('ckr' in row.outcome || row.log.length === 1) expect(excluded).toEqual([]);
  });
});

describe('failover policy: one failed attempt by table (FailoverRun.failed)', () => {
  type Row = { fault: Exclude<Fault, 'ok'>; sick?: boolean; canRefind?: boolean; step: FailoverStep; probed: boolean };
  const rows: Row[] = [
    { fault: 'removed', step: 'elsewhere', probed: false },
    { fault: 'deviceError', step: 'elsewhere', probed: false },
    { fault: 'notPresent', step: 'elsewhere', probed: false },
    { fault: 'lost', step: 'elsewhere', probed: false },
    { fault: 'unsent', step: 'elsewhere', probed: false },
    { fault: 'deadline', step: 'elsewhere', probed: false },
    { fault: 'raw', step: 'elsewhere', probed: false },
    { fault: 'mechanism', step: 'throw', probed: false },
    { fault: 'pin', step: 'throw', probed: false },
    { fault: 'argument', step: 'throw', probed: false },
    { fault: 'general', step: 'throw', probed: true },
    { fault: 'general', sick: true, step: 'elsewhere', probed: true },
    { fault: 'notLoggedIn', step: 'throw', probed: true },
    { fault: 'command', sick: true, step: 'elsewhere', probed: true },
    { fault: 'stale', canRefind: true, step: 'refind', probed: false },
    { fault: 'staleKey', canRefind: true, step: 'refind', probed: false },
    { fault: 'stale', step: 'throw', probed: true },
    { fault: 'stale', sick: true, step: 'elsewhere', probed: true },
    { fault: 'replication', sick: true, step: 'throw', probed: false },
    { fault: 'bug', sick: true, step: 'throw', probed: false },
  ];

  it.each(rows)('$fault (sick: $sick, canRefind: $canRefind) gives $step', async ({ fault, sick, canRefind, step, probed }) => {
    const log: string[] = [];
    const [member] = group(sick === true ? 'A!' : 'A', {}, log);
    const run = new FailoverPolicy().begin(3);
    expect(await run.failed(member!, errorOf(fault, 'm0'), canRefind)).toBe(step);
    expect(log).toEqual(probed ? ['probe 0'] : []);
    expect(run.excludes(0)).toBe(step === 'elsewhere');
    expect(run.failures).toBe(1);
    expect(run.refinds).toBe(step === 'refind' ? 1 : 0);
  });

  it('the default bound is one attempt per member plus one per refind', async () => {
    const log: string[] = [];
    const members = group('A A A', {}, log);
    const run = new FailoverPolicy().begin(members.length);
    const steps: FailoverStep[] = [];
    steps.push(await run.failed(members[0]!, errorOf('stale', 'm0'), true));
    for (const m of members) steps.push(await run.failed(m, errorOf('removed', m.name), true));
    expect(steps).toEqual(['refind', 'elsewhere', 'elsewhere', 'exhausted']);
    expect(run.excluded).toEqual([0, 1, 2]);
    expect(run.lastError).toMatchObject({ ckr: 'CKR_DEVICE_REMOVED', member: 'm2' });
  });

  it.each([
    [{ maxAttempts: 0 }, /maxAttempts must be an integer >= 1 or Infinity, got 0/],
    [{ maxAttempts: 1.5 }, /got 1\.5/],
    [{ maxAttempts: Number.NaN }, /got NaN/],
    [{ refinds: -1 }, /refinds must be an integer >= 0, got -1/],
    [{ refinds: Infinity }, /refinds must be an integer >= 0, got Infinity/],
  ] as [FailoverPolicyOptions, RegExp][])('refuses %o with a message that echoes it', (options, message) => {
    expect(() => new FailoverPolicy(options)).toThrow(InvalidArgumentError);
    expect(() => new FailoverPolicy(options)).toThrow(message);
  });

  it('takes maxAttempts: Infinity (bounded by the members alone)', async () => {
    const log: string[] = [];
    const members = group('A A', { 0: ['removed'], 1: ['removed'] }, log);
    const policy = new FailoverPolicy({ maxAttempts: Infinity });
    const pick = (run: FailoverRun) => members.find((m) => !run.excludes(m.index));
    await expect(
      policy.execute<Fake, number>({ size: 2, pick, none: (cause) => new NoMemberAvailableError('none', { cause }) }, (m) => attempt(m, log)),
    ).rejects.toMatchObject({ code: 'ERR_NO_MEMBER' });
    expect(log).toEqual(['run 0', 'run 1']);
  });
});

/**
 * A fake multi-part operation (a digest): Init on a member, then parts; it keeps the parts
 * that succeeded, and its replay feeds them to another member after an Init there.
 */
class FakeDigest {
  readonly kept: string[] = [];
  readonly #log: string[];
  /** Faults for the replays, by member. */
  readonly #replayFaults: Record<number, Fault[]>;

  constructor(log: string[], replayFaults: Record<number, Fault[]>) {
    this.#log = log;
    this.#replayFaults = replayFaults;
  }

  readonly replay = async (member: Fake): Promise<void> => {
    this.#log.push(`replay ${member.index} [${this.kept.join(',')}]`);
    const fault = this.#replayFaults[member.index]?.shift() ?? 'ok';
    if (fault !== 'ok') throw errorOf(fault, member.name);
  };

  /** One C_DigestUpdate: run on the member, kept once it succeeded. */
  async update(member: Fake, part: string): Promise<number> {
    this.#log.push(`update ${member.index} ${part}`);
    const fault = member.faults.shift() ?? 'ok';
    if (fault !== 'ok') throw errorOf(fault, member.name);
    this.kept.push(part);
    return member.index;
  }
}

describe('failover policy: operations pinned to one member, by table', () => {
  type Row = {
    name: string;
    members: string;
    /** Faults on each member's next update. */
    faults: Record<number, Fault[]>;
    /** Faults on a replay onto that member. */
    replayFaults?: Record<number, Fault[]>;
    /** Whether the operation may be replayed (its result does not depend on the member). @default true */
    replayable?: boolean;
    /** The parts sent, one update each. */
    parts: string[];
    log: string[];
    /** Where the operation ends up, or the error of the first update that fails. */
    outcome: { member: number; replays: number } | { code: string; ckr?: string; cause?: string };
  };
  const rows: Row[] = [
    {
      name: 'no fault: every part on the pinned member',
      members: 'A A A',
      faults: {},
      parts: ['a', 'b'],
      log: ['update 0 a', 'update 0 b'],
      outcome: { member: 0, replays: 0 },
    },
    {
      name: 'the pinned member is removed mid-way: replayed on the next with the parts so far',
      members: 'A A A',
      faults: { 0: ['ok', 'removed'] },
      parts: ['a', 'b', 'c'],
      log: ['update 0 a', 'update 0 b', 'replay 1 [a]', 'update 1 b', 'update 1 c'],
      outcome: { member: 1, replays: 1 },
    },
    {
      name: 'a lost connection on the first part: replayed with nothing kept',
      members: 'A A',
      faults: { 0: ['lost'] },
      parts: ['a'],
      log: ['update 0 a', 'replay 1 []', 'update 1 a'],
      outcome: { member: 1, replays: 1 },
    },
    {
      name: 'not replayable: the member failing ends the operation with a restart error',
      members: 'A A A',
      faults: { 0: ['ok', 'removed'] },
      replayable: false,
      parts: ['a', 'b', 'c'],
      log: ['update 0 a', 'update 0 b'],
      outcome: { code: 'ERR_OPERATION_RESTART', cause: 'CKR_DEVICE_REMOVED' },
    },
    {
      name: 'a caller fault goes back as it is, and the operation is not moved',
      members: 'A A',
      faults: { 0: ['ok', 'argument'] },
      parts: ['a', 'b'],
      log: ['update 0 a', 'update 0 b'],
      outcome: { code: 'ERR_INVALID_ARGUMENT' },
    },
    {
      name: 'an ambiguous answer from a member that is well goes back',
      members: 'A A',
      faults: { 0: ['general'] },
      parts: ['a'],
      log: ['update 0 a', 'probe 0'],
      outcome: { code: 'ERR_PKCS11', ckr: 'CKR_GENERAL_ERROR' },
    },
    {
      name: 'an ambiguous answer from a member that fails its probe: replayed elsewhere',
      members: 'A! A',
      faults: { 0: ['general'] },
      parts: ['a'],
      log: ['update 0 a', 'probe 0', 'replay 1 []', 'update 1 a'],
      outcome: { member: 1, replays: 1 },
    },
    {
      name: 'the member taking over fails during the replay: the next one takes it up',
      members: 'A A A',
      faults: { 0: ['ok', 'deadline'] },
      replayFaults: { 1: ['lost'] },
      parts: ['a', 'b'],
      log: ['update 0 a', 'update 0 b', 'replay 1 [a]', 'replay 2 [a]', 'update 2 b'],
      outcome: { member: 2, replays: 1 },
    },
    {
      name: 'the member taking over refuses the replay: a restart error',
      members: 'A A A',
      faults: { 0: ['removed'] },
      replayFaults: { 1: ['mechanism'] },
      parts: ['a'],
      log: ['update 0 a', 'replay 1 []'],
      outcome: { code: 'ERR_OPERATION_RESTART', cause: 'CKR_MECHANISM_INVALID' },
    },
    {
      name: 'no member left to take it up',
      members: 'A A',
      faults: { 0: ['removed'] },
      replayFaults: { 1: ['removed'] },
      parts: ['a'],
      log: ['update 0 a', 'replay 1 []'],
      outcome: { code: 'ERR_NO_MEMBER', cause: 'CKR_DEVICE_REMOVED' },
    },
    {
      name: 'replayed twice: each later failure moves it on, the failed members passed over',
      members: 'A A A',
      faults: { 0: ['removed'], 1: ['ok', 'lost'] },
      parts: ['a', 'b', 'c'],
      log: ['update 0 a', 'replay 1 []', 'update 1 a', 'update 1 b', 'replay 2 [a]', 'update 2 b', 'update 2 c'],
      outcome: { member: 2, replays: 2 },
    },
    {
      name: 'a standby member takes it up when no active one is left',
      members: 'A a S',
      faults: { 0: ['removed'] },
      parts: ['a'],
      log: ['update 0 a', 'replay 2 []', 'update 2 a'],
      outcome: { member: 2, replays: 1 },
    },
  ];

  it.each(rows)('$members: $name', async (row) => {
    const log: string[] = [];
    const members = group(row.members, row.faults, log);
    // Members a failure took out stop serving, as Member.fail does; the pick is the Router's.
    const scheduler = new LeastBusyScheduler();
    const digest = new FakeDigest(log, { ...row.replayFaults });
    const pinned: PinnedExecution<Fake> = new FailoverPolicy().pin<Fake>(
      members[0]!,
      { name: 'C_DigestUpdate (CKM_SHA256)', ...(row.replayable === false ? {} : { replay: digest.replay }) },
      {
        size: members.length,
        pick: (run: FailoverRun): Fake | undefined => {
          const candidates = eligible(members, (m) => !run.excludes(m.index) && m !== pinned.member);
          return candidates.length > 0 ? scheduler.pick(candidates) : undefined;
        },
      },
    );
    let outcome: Row['outcome'] = { member: pinned.member.index, replays: 0 };
    try {
      for (const part of row.parts) await pinned.run((m) => digest.update(m, part));
      outcome = { member: pinned.member.index, replays: pinned.replays };
    } catch (error) {
      outcome = outcomeOf(error) as Row['outcome'];
    }
    expect(log).toEqual(row.log);
    expect(outcome).toEqual(row.outcome);
    if ('member' in row.outcome) expect(digest.kept).toEqual(row.parts);
  });

  it('the restart error names the operation and the member that failed', async () => {
    const log: string[] = [];
    const members = group('A A', { 0: ['removed'] }, log);
    const pinned = new FailoverPolicy().pin<Fake>(members[0]!, { name: 'C_SignUpdate (CKM_ECDSA)' }, { size: 2, pick: () => members[1] });
    const error = await pinned.run((m) => attempt(m, log)).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_OPERATION_RESTART', name: 'OperationRestartError', operation: 'C_SignUpdate (CKM_ECDSA)', member: 'm0' });
    expect((error as Error).message).toMatch(/^C_SignUpdate \(CKM_ECDSA\) on member m0: .*start it again$/);
    expect(HaError.is(error)).toBe(true);
  });

  it('a raw pkcs11js error on a pinned step is classified as the table says', async () => {
    const log: string[] = [];
    const members = group('A A', {}, log);
    const raw = errorOf('raw', 'm0');
    expect(toPkcs11Error(raw, '', undefined)?.fault).toBe('member');
    let first = true;
    const pinned = new FailoverPolicy().pin<Fake>(members[0]!, { name: 'op', replay: async () => undefined }, { size: 2, pick: () => members[1] });
    const answer = await pinned.run(async (m) => {
      if (first) {
        first = false;
        throw raw;
      }
      return m.index;
    });
    expect(answer).toBe(1);
    expect(pinned.member.index).toBe(1);
  });
});
