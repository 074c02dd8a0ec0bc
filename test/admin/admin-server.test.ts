/**
 * The admin endpoint on a group over real SoftHSM2 tokens: the socket file (mode 0600,
 * never replacing another file, a stale one replaced, removed on close), the protocol
 * (ids, typed errors with stable codes) and its refusal of PINs.
 */
import { execFile } from 'node:child_process';
import { lstatSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient } from '../../src/admin/admin-client.js';
import { AdminError } from '../../src/admin/admin-protocol.js';
import { resolveAdminOptions } from '../../src/admin/admin-server.js';
import type { GroupConfig } from '../../src/group/group-config.js';
import { HaGroup } from '../../src/group/ha-group.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';

let bed: Testbed;
let n = 0;
const socketPath = () => join(bed.dir, `admin-${++n}.sock`);
const config = (socket: string): GroupConfig => ({ members: bed.memberConfigs(), transport: 'in-process', admin: { socket } });

beforeAll(async () => {
  bed = await createTestbed({ count: 2, labelPrefix: 'adm' });
});
afterAll(async () => bed?.dispose());

/** Sends raw lines and collects the answers until `count` came. */
async function raw(path: string, lines: string[], count: number): Promise<Record<string, unknown>[]> {
  const socket = connect(path);
  const answers: Record<string, unknown>[] = [];
  let buffer = '';
  return new Promise((resolve, reject) => {
    socket.on('error', reject);
    socket.on('connect', () => socket.write(lines.map((l) => `${l}\n`).join('')));
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      const parts = buffer.split('\n');
      buffer = parts.pop()!;
      answers.push(...parts.map((p) => JSON.parse(p) as Record<string, unknown>));
      if (answers.length >= count) {
        socket.destroy();
        resolve(answers);
      }
    });
  });
}

describe('the socket file', () => {
  it('is a socket with mode 0600 while the group is open, and is removed when it closes', async () => {
    const path = socketPath();
    const group = await HaGroup.open(config(path));
    const stat = lstatSync(path);
    expect(stat.isSocket()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o600);
    await group.close();
    expect(existsSync(path)).toBe(false);
  });

  it('refuses to replace a file that is not a socket, leaves it untouched, and does not open the group', async () => {
    const path = socketPath();
    writeFileSync(path, 'precious');
    const error = await HaGroup.open(config(path)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AdminError);
    expect(error).toMatchObject({ code: 'ERR_ADMIN', reason: 'not-a-socket' });
    expect(readFileSync(path, 'utf8')).toBe('precious');
  });

  it('replaces a stale socket left by a process that died, but not one another process listens on', async () => {
    const stale = socketPath();
    // A process that listens and exits without closing leaves its socket file behind.
    await promisify(execFile)(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.exit(0))`]);
    expect(lstatSync(stale).isSocket()).toBe(true);
    const group = await HaGroup.open(config(stale));
    await group.close();

    const live = socketPath();
    const other = createServer((s) => s.destroy());
    await new Promise<void>((resolve) => other.listen(live, resolve));
    try {
      await expect(HaGroup.open(config(live))).rejects.toMatchObject({ code: 'ERR_ADMIN', reason: 'in-use' });
      expect(lstatSync(live).isSocket()).toBe(true);
    } finally {
      other.close();
    }
  });

  it('the option is validated like every other', () => {
    expect(resolveAdminOptions(undefined)).toBeUndefined();
    expect(() => resolveAdminOptions({ socket: '' })).toThrow(/admin\.socket: must be a non-empty path/);
    expect(() => resolveAdminOptions({ socket: '/x', port: 1 })).toThrow(/admin\.port: unknown option/);
    expect(() => resolveAdminOptions('/x')).toThrow(/admin: must be \{ socket: <path> \}/);
  });
});

describe('the protocol', () => {
  let group: HaGroup;
  let path: string;
  beforeAll(async () => {
    path = socketPath();
    group = await HaGroup.open(config(path));
  });
  afterAll(async () => group?.close());

  it('answers requests by id with the group status and the results of its methods', async () => {
    const admin = await AdminClient.connect(path);
    try {
      const [status, standby] = await Promise.all([admin.request('status', {}), admin.request('standby', { member: 'adm-2', standby: true })]);
      expect((status as { members: unknown[] }).members).toHaveLength(2);
      expect(standby).toBeNull();
      expect(group.status().members[1]).toMatchObject({ role: 'standby' });
      await admin.request('standby', { member: 'adm-2', standby: false });
      expect(group.status().members[1]).toMatchObject({ role: 'active', state: { kind: 'active' } });
      expect(await admin.request('recover', { member: 'adm-1' })).toBe(true);
      await admin.request('settle', {});
    } finally {
      admin.close();
    }
  });

  it("gives the group's errors their codes and its own a stable reason", async () => {
    const admin = await AdminClient.connect(path);
    try {
      await expect(admin.request('recover', { member: 'nobody' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      await expect(admin.request('recover', {} as { member: string })).rejects.toMatchObject({ code: 'ERR_ADMIN', reason: 'bad-request' });
      await expect(admin.request('addMember', { config: { module: '/nonexistent.so', token: { label: 'x' } } })).rejects.toMatchObject({ code: 'ERR_MEMBER_UNREACHABLE' });
    } finally {
      admin.close();
    }
    const answers = await raw(path, ['not json', '{"id":7,"method":"shutdown"}', '{"id":8,"method":"status","params":[]}'], 3);
    expect(answers).toEqual(
      expect.arrayContaining([
        { id: 0, error: expect.objectContaining({ code: 'ERR_ADMIN', reason: 'bad-request' }) },
        { id: 7, error: expect.objectContaining({ code: 'ERR_ADMIN', reason: 'unknown-method' }) },
        { id: 8, error: expect.objectContaining({ code: 'ERR_ADMIN', reason: 'bad-request' }) },
      ]),
    );
  });

  it('accepts no PIN: a member configuration with one is refused, and the PIN is not echoed', async () => {
    const admin = await AdminClient.connect(path);
    try {
      const member = { module: bed.tokens[0]!.modulePath, token: { label: 'adm-9' }, userPin: 'pin-4711-secret' };
      const error = await admin.request('addMember', { config: member }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'ERR_ADMIN', reason: 'pin-refused' });
      expect((error as Error).message).toContain('config.userPin');
      expect((error as Error).message).not.toContain('4711');
      await expect(admin.request('addMember', { config: { ...member, userPin: undefined, module: { path: 'x', env: { soPin: '1' } } } })).rejects.toMatchObject({ reason: 'pin-refused' });
    } finally {
      admin.close();
    }
    expect(group.status().members.map((m) => m.name)).not.toContain('adm-9');
  });

  it('a client sees a closed endpoint as unreachable, and pending requests fail when the group closes', async () => {
    await expect(AdminClient.connect(join(bed.dir, 'nothing.sock'))).rejects.toMatchObject({ code: 'ERR_ADMIN', reason: 'unreachable' });
    const admin = await AdminClient.connect(path);
    await group.close();
    await expect(admin.request('status', {})).rejects.toMatchObject({ code: 'ERR_ADMIN', reason: 'connection-lost' });
    expect(existsSync(path)).toBe(false);
  });
});
