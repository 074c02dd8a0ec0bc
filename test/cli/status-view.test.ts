/**
 * The CLI's view of a status: the health verdict behind the exit code and the table a
 * person reads (times, host pids).
 */
import { describe, expect, it } from 'vitest';
import { health, statusTable, summaryLine } from '../../src/cli/status-view.js';
import type { GroupStatus, MemberStatus } from '../../src/group/group-status.js';

const T0 = Date.UTC(2026, 11, 7, 14, 3, 27);

function member(name: string, over: Partial<MemberStatus>): MemberStatus {
  return {
    name,
    index: 0,
    role: 'active',
    promoted: false,
    state: { kind: 'active' },
    transport: 'host',
    token: { label: name, serial: '0001' },
    outstanding: 0,
    served: 12,
    loginFailures: 0,
    failures: 0,
    sessions: { open: 1, idle: 1, waiting: 0, cap: 32 },
    owed: 0,
    changedAt: T0,
    pid: 4242,
    ...over,
  };
}

function status(members: MemberStatus[]): GroupStatus {
  return { time: T0, primary: members[0]?.name, scheduler: 'least-busy', loggedIn: true, objects: 3, domain: undefined, owed: {}, members };
}

describe('status view', () => {
  it('shows when each member entered its state and the pid of its member host', () => {
    const table = statusTable(status([member('m-1', {}), member('m-2', { pid: undefined, changedAt: undefined })]));
    expect(table).toMatch(/^MEMBER\s+ROLE\s+STATE\s+SINCE\s+PID\s+OUTSTANDING/m);
    expect(table).toMatch(/^m-1\s+active\s+active\s+14:03:27\s+4242\s+0\s+12/m);
    expect(table).toMatch(/^m-2\s+active\s+active\s+-\s+-\s+0\s+12/m);
    expect(table).toMatch(/\nhealthy\n/);
  });

  it('calls a group with a failed or owing member degraded, naming each problem', () => {
    const s = status([member('m-1', {}), member('m-2', { state: { kind: 'failed', reason: 'connection lost', since: 5 } as MemberStatus['state'], pid: undefined }), member('m-3', { owed: 2 })]);
    expect(health(s)).toEqual({ healthy: false, problems: ['m-2 failed: connection lost', 'm-3 owes 2 items'] });
    expect(summaryLine(s)).toBe('degraded: 2/3 members serve, primary m-1; m-2 failed: connection lost; m-3 owes 2 items');
  });
});
