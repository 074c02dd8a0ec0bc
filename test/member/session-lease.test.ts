/**
 * SessionLease and SessionPool.replace with a fake session source: a leased session is
 * the caller's for several steps, one at a time; it goes back to the pool after a clean
 * end, and is closed after its replacement is open when aborted (closing a token's last
 * session would log the application out).
 */
import { describe, expect, it } from 'vitest';
import { MemberUnreachableError } from '../../src/errors/ha-error.js';
import { SessionLease } from '../../src/member/session-lease.js';
import { SessionPool } from '../../src/member/session-pool.js';
import type { Command } from '../../src/pkcs11/commands.js';
import { NOT_NOW, type Transport } from '../../src/transport/transport.js';

function fakePool(cap = 2) {
  const log: string[] = [];
  let next = 0;
  const pool = new SessionPool(
    {
      open: async () => {
        const s = Buffer.alloc(8);
        s.writeUInt8(++next);
        log.push(`open ${next}`);
        return s;
      },
      close: async (s) => {
        log.push(`close ${s[0]}`);
      },
    },
    cap,
  );
  return { pool, log };
}

const TRANSPORT = {} as Transport;

describe('SessionLease', () => {
  it('runs steps one at a time on its session and gives it back after a clean end', async () => {
    const { pool, log } = fakePool();
    const session = await pool.acquire();
    const steps: Command[] = [];
    let release!: () => void;
    const lease = new SessionLease('m', session, pool, TRANSPORT, (command) => {
      steps.push(command);
      return new Promise((resolve) => (release = () => resolve(undefined)));
    });
    const first = lease.run((s) => ({ op: 'digestUpdate', session: s, data: Buffer.alloc(1) }));
    await expect(lease.run((s) => ({ op: 'digestFinal', session: s }))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    release();
    await first;
    expect(steps.map((c) => [c.op, (c as { session: Buffer }).session[0]])).toEqual([['digestUpdate', 1]]);
    lease.release();
    expect(pool.stats).toMatchObject({ open: 1, idle: 1 });
    await expect(lease.run((s) => ({ op: 'digestFinal', session: s }))).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    expect(log).toEqual(['open 1']);
  });

  it('runNow makes a step at once when the transport can, and gives NOT_NOW while a step runs, after the end, or without runNow', async () => {
    const { pool } = fakePool();
    const session = await pool.acquire();
    const now: string[] = [];
    const transport = { runNow: () => undefined } as unknown as Transport;
    let release!: () => void;
    const lease = new SessionLease(
      'm',
      session,
      pool,
      transport,
      () => new Promise((resolve) => (release = () => resolve(undefined))),
      (command) => {
        now.push(command.op);
        if (command.op === 'digestFinal') throw new MemberUnreachableError('m', 'gone');
        return Buffer.from('out');
      },
    );
    expect(lease.runNow((s) => ({ op: 'digestUpdate', session: s, data: Buffer.alloc(1) }))).toEqual(Buffer.from('out'));
    const running = lease.run((s) => ({ op: 'digestUpdate', session: s, data: Buffer.alloc(1) }));
    expect(lease.runNow((s) => ({ op: 'digestUpdate', session: s, data: Buffer.alloc(1) }))).toBe(NOT_NOW);
    release();
    await running;
    // A member fault breaks the lease: its session is forgotten, not handed back.
    expect(() => lease.runNow((s) => ({ op: 'digestFinal', session: s }))).toThrow(MemberUnreachableError);
    lease.release();
    expect(pool.stats).toMatchObject({ open: 0 });
    expect(lease.runNow((s) => ({ op: 'digestFinal', session: s }))).toBe(NOT_NOW);
    expect(now).toEqual(['digestUpdate', 'digestFinal']);
    const plain = new SessionLease('m', await pool.acquire(), pool, TRANSPORT, async () => undefined, () => 'never');
    expect(plain.runNow((s) => ({ op: 'digestFinal', session: s }))).toBe(NOT_NOW);
  });

  it('abort waits for the running step, opens a replacement, then closes the dirty session', async () => {
    const { pool, log } = fakePool();
    const session = await pool.acquire();
    let release!: () => void;
    const lease = new SessionLease('m', session, pool, TRANSPORT, () => new Promise((resolve) => (release = () => resolve(undefined))));
    const running = lease.run((s) => ({ op: 'signUpdate', session: s, data: Buffer.alloc(1) }));
    const aborting = lease.abort();
    expect(log).toEqual(['open 1']);
    release();
    await running;
    await aborting;
    expect(log).toEqual(['open 1', 'open 2', 'close 1']);
    expect(pool.stats).toMatchObject({ open: 1, idle: 1 });
    expect((await pool.acquire())[0]).toBe(2);
  });

  it('a lease broken by a member fault only forgets its session (the member lost it)', async () => {
    const { pool, log } = fakePool();
    const session = await pool.acquire();
    const lease = new SessionLease('m', session, pool, TRANSPORT, () => Promise.reject(new MemberUnreachableError('m', 'gone')));
    await expect(lease.run((s) => ({ op: 'digestFinal', session: s }))).rejects.toMatchObject({ code: 'ERR_MEMBER_UNREACHABLE' });
    await lease.abort();
    expect(log).toEqual(['open 1']);
    expect(pool.stats).toMatchObject({ open: 0, idle: 0 });
  });

  it('a replacement goes to the longest waiter', async () => {
    const { pool, log } = fakePool(1);
    const session = await pool.acquire();
    const waiting = pool.acquire();
    await pool.replace(session);
    expect((await waiting)[0]).toBe(2);
    expect(log).toEqual(['open 1', 'open 2', 'close 1']);
  });
});
