/**
 * MultipartOperation ended (its session closed, a logout) while a step or a replay is in
 * flight: nothing stays held, nothing of the group's replay budget is lost. Members are
 * stand-ins here: the interleaving (an answer held until the operation has ended) is what
 * a real token cannot give on demand.
 */
import { describe, expect, it } from 'vitest';
import { MemberUnreachableError } from '../../src/errors/ha-error.js';
import type { Member } from '../../src/member/member.js';
import { SessionLease } from '../../src/member/session-lease.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import type { Command } from '../../src/pkcs11/commands.js';
import { FailoverPolicy } from '../../src/routing/failover-policy.js';
import type { Scheduler } from '../../src/routing/scheduler.js';
import type { Transport } from '../../src/transport/transport.js';
import { MultipartOperation } from '../../src/slot/multipart-operation.js';
import { ReplayBudget } from '../../src/slot/replay-buffer.js';

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A member stand-in whose leased sessions answer through `answer`; `leased` resolves at its first lease. */
function standIn(name: string, index: number, answer: (command: Command) => Promise<unknown>): Member & { leases: SessionLease[]; leased: Promise<void> } {
  const leases: SessionLease[] = [];
  const first = deferred<void>();
  const pool = { release: () => undefined, discard: () => undefined, replace: async () => undefined };
  const member = {
    name,
    index,
    serving: true,
    role: 'active',
    promoted: false,
    outstanding: 0,
    probe: async () => true,
    lease: async () => {
      const lease = new SessionLease(name, Buffer.from([index]), pool, {} as Transport, (command) => answer(command) as never);
      leases.push(lease);
      first.resolve();
      return lease;
    },
    leases,
    leased: first.promise,
  };
  return member as unknown as Member & { leases: SessionLease[]; leased: Promise<void> };
}

const firstPick: Scheduler = { name: 'first', pick: (candidates) => candidates[0] };
const SHA256 = { mechanism: pkcs11js.CKM_SHA256 };

describe('MultipartOperation ended while a step runs', () => {
  it('an update answered after the end gives its replay bytes back to the group', async () => {
    const gate = deferred<unknown>();
    const a = standIn('A', 0, async (command) => (command.op === 'digestUpdate' ? gate.promise : undefined));
    const budget = new ReplayBudget(1000);
    const op = await MultipartOperation.begin({ mode: 'primary', operationBytes: 500, budget, failover: new FailoverPolicy(), scheduler: firstPick, members: [a], primary: a }, 'digest', SHA256, undefined);
    const update = op.update(Buffer.alloc(100));
    const ending = op.end();
    gate.resolve(undefined);
    await expect(update).rejects.toMatchObject({ ckr: 'CKR_OPERATION_NOT_INITIALIZED' });
    await ending;
    expect(budget.used).toBe(0);
  });

  it('a replay that finishes after the end does not keep its new session', async () => {
    const initOnB = deferred<unknown>();
    const a = standIn('A', 0, async (command) => {
      if (command.op === 'digestUpdate') throw new MemberUnreachableError('A', 'connection lost');
      return undefined;
    });
    const b = standIn('B', 1, async (command) => (command.op === 'digestInit' ? initOnB.promise : undefined));
    const budget = new ReplayBudget(1 << 20);
    const op = await MultipartOperation.begin({ mode: 'primary', operationBytes: 1 << 16, budget, failover: new FailoverPolicy(), scheduler: firstPick, members: [a, b], primary: a }, 'digest', SHA256, undefined);
    const update = op.update(Buffer.alloc(10));
    await b.leased; // the replay on B waits for its Init
    await op.end();
    initOnB.resolve(undefined);
    // Ended: the update fails (as a restart or not-initialized error), whatever the replay did.
    await expect(update).rejects.toThrow();
    expect(b.leases.map((l) => l.held)).toEqual([false]);
    expect(budget.used).toBe(0);
  });
});
