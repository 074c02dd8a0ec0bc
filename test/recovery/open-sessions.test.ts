/**
 * OpenSessions: the registry recovery uses to give a recovered member the session objects
 * of every open virtual session. The sessions here are stand-ins whose restores finish
 * when the test says (a real session cannot be held half-way on demand); OpenSessions
 * only passes the member through, so a stand-in member is enough.
 */
import { describe, expect, it } from 'vitest';
import type { Member } from '../../src/member/member.js';
import { OpenSessions, type SessionObjectsRestorer, type SessionRestoreOptions, type SessionRestoreResult } from '../../src/recovery/open-sessions.js';

const member = { name: 'member-1', index: 0 } as unknown as Member;
const options: SessionRestoreOptions = { domainKey: () => undefined };

/** A session whose restore waits until `finish()`; `log` records starts and ends. */
function session(name: string, result: SessionRestoreResult, log: string[]): SessionObjectsRestorer & { finish(): void; fail(e: Error): void } {
  let finish: (() => void) | undefined;
  let fail: ((e: Error) => void) | undefined;
  return {
    restore(m, o) {
      expect(m).toBe(member);
      expect(o).toBe(options);
      log.push(`start ${name}`);
      return new Promise<SessionRestoreResult>((resolve, reject) => {
        finish = () => {
          log.push(`end ${name}`);
          resolve(result);
        };
        fail = reject;
      });
    },
    finish: () => finish!(),
    fail: (e) => fail!(e),
  };
}

const flush = () => new Promise<void>((r) => setImmediate(r));
const ok = (restored: number): SessionRestoreResult => ({ restored, failed: [] });

/** Registered stand-in sessions named a, b, ... restoring `restored[i]` objects each; `close[i]` unregisters one. */
function registered(...restored: number[]) {
  const log: string[] = [];
  const sessions = new OpenSessions();
  const each = restored.map((n, i) => session(String.fromCharCode(97 + i), ok(n), log));
  const close = each.map((s) => sessions.add(s));
  return { log, sessions, each, close };
}

describe('OpenSessions.restoreSessions', () => {
  it('restores one session after another, in the order they opened', async () => {
    const { log, sessions, each } = registered(1, 1, 1);
    const done = sessions.restoreSessions(member, options);
    for (const s of each) {
      await flush();
      s.finish();
    }
    await done;
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  it.each([
    { results: [], expected: { sessions: 0, restored: 0, failed: [] } },
    { results: [ok(2)], expected: { sessions: 1, restored: 2, failed: [] } },
    {
      results: [ok(2), { restored: 1, failed: [{ object: 7, reason: 'x' }] }, ok(0), { restored: 3, failed: [{ object: 9, reason: 'y' }] }],
      expected: { sessions: 4, restored: 6, failed: [{ object: 7, reason: 'x' }, { object: 9, reason: 'y' }] },
    },
  ])('sums what $results.length sessions restored and gathers what they could not', async ({ results, expected }) => {
    const sessions = new OpenSessions();
    for (const r of results) sessions.add({ restore: async () => r });
    expect(await sessions.restoreSessions(member, options)).toEqual(expected);
  });

  it('a closed session is left out', async () => {
    const { log, sessions, each, close } = registered(1, 5);
    expect(sessions.size).toBe(2);
    close[1]!();
    expect(sessions.size).toBe(1);
    const done = sessions.restoreSessions(member, options);
    await flush();
    each[0]!.finish();
    expect(await done).toEqual({ sessions: 1, restored: 1, failed: [] });
    expect(log).toEqual(['start a', 'end a']);
  });

  it('a member fault in one session ends the restore: later sessions are not tried', async () => {
    const { log, sessions, each } = registered(1, 1);
    const done = sessions.restoreSessions(member, options);
    await flush();
    each[0]!.fail(new Error('member lost'));
    await expect(done).rejects.toThrow('member lost');
    expect(log).toEqual(['start a']);
  });
});
