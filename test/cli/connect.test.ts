/**
 * The `pkcs11-ha` CLI on a running application's group, through its admin endpoint
 * (`--connect <socket>`), over real SoftHSM2 tokens: the application here is this test,
 * which opens the group with `admin: { socket }`; the CLI runs as a child process where
 * its exit code and stderr matter, in this process elsewhere.
 */
import { join } from 'node:path';
import * as pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';
import { until } from '../helpers/until.js';
import { noStack, run, spawnCli, startCli } from './run-cli.js';

let bed: Testbed;
let app: HaGroup;
let session: VirtualSession;
let socket: string;
const states = () => app.status().members.map((m) => `${m.name}:${m.role}:${m.state.kind}`);

beforeAll(async () => {
  bed = await createTestbed({ count: 3, labelPrefix: 'con' });
  // All three share one domain key, so that con-3 can join the running group later.
  await HaGroup.initDomain({ members: bed.memberConfigs(), transport: 'in-process' });
  socket = join(bed.dir, 'admin.sock');
  app = await HaGroup.open({ members: bed.memberConfigs().slice(0, 2), transport: 'in-process', recovery: { maxAttempts: 0 }, admin: { socket } });
  session = app.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);
});
afterAll(async () => {
  await app?.close();
  await bed?.dispose();
});

describe('reading a running group', () => {
  it('status --connect (a child process): the live status as JSON, exit 0', async () => {
    const r = await spawnCli(['status', '--connect', socket]);
    expect(r).toMatchObject({ code: 0, err: '' });
    const status = JSON.parse(r.out) as { loggedIn: boolean; members: { name: string; state: { kind: string } }[] };
    expect(status.loggedIn).toBe(true);
    expect(status.members.map((m) => `${m.name}:${m.state.kind}`)).toEqual(['con-1:active', 'con-2:active']);
  });

  it('a failed member that owes: status and check exit 1 with why; sync cannot settle it (1); recover brings it back (0)', async () => {
    internalsOf(app).members[1]!.fail('injected by the test');
    await session.generateKey('AES_KEY_GEN', { label: 'con-owed', token: true, valueLen: 32, encrypt: true, decrypt: true });
    const check = await spawnCli(['check', '--connect', socket]);
    expect(check.code).toBe(1);
    expect(check.out).toBe('degraded: 1/2 members serve, primary con-1; con-2 failed: injected by the test; con-2 owes 1 item\n');
    expect(noStack(check.out + check.err)).toBe(true);
    const status = await spawnCli(['status', '--connect', socket]);
    expect(status).toMatchObject({ code: 1, err: '' });
    const members = (JSON.parse(status.out) as { members: { name: string; state: { kind: string; reason?: string }; owed: number }[] }).members;
    expect(members.map((m) => `${m.name}:${m.state.kind}:${m.owed}`)).toEqual(['con-1:active:0', 'con-2:failed:1']);
    expect(members[1]!.state.reason).toBe('injected by the test');

    const sync = await run(['sync', '--connect', socket]);
    expect(sync.code).toBe(1);
    expect((JSON.parse(sync.out) as { owed: object }).owed).toEqual({ 'con-2': 1 });

    expect(await run(['recover', 'con-2', '--connect', socket])).toMatchObject({ code: 0, out: 'con-2 serves\n' });
    expect(app.status().owed).toEqual({});
    expect(await run(['check', '--connect', socket])).toMatchObject({ code: 0, out: 'healthy: 2/2 members serve, primary con-1\n' });
    expect(await run(['sync', '--connect', socket])).toMatchObject({ code: 0, err: '' });
  });

  it('sync --connect: the resync progress crosses the socket to the bar on a terminal, then exit 0', async () => {
    // A member that serves but owes (as after a restart, the journal telling what it missed):
    // failed while a key was made, then back in service without its resync.
    const member = internalsOf(app).members[1]!;
    member.fail('injected by the test');
    await session.generateKey('AES_KEY_GEN', { label: 'con-owed-too', token: true, valueLen: 32, encrypt: true, decrypt: true });
    await member.reconnect();
    await member.login(pkcs11js.CKU_USER, bed.tokens[1]!.userPin);
    // What a recovery does before it settles (without it the domain key's handle may be stale).
    await internalsOf(app).domain.admit(member);
    member.rejoin();
    expect(states()).toEqual(['con-1:active:active', 'con-2:active:active']);
    expect(app.status().owed).toEqual({ 'con-2': 1 });

    const sync = await run(['sync', '--connect', socket], { errTty: true });
    expect(sync.code).toBe(0);
    expect(sync.err).toMatch(/con-2 \[.*\] 1\/1/);
    expect((JSON.parse(sync.out) as { owed: object }).owed).toEqual({});
    expect(app.status().owed).toEqual({});
  });

  it('status --watch --json streams the live status until --count', async () => {
    const r = await run(['status', '--connect', socket, '--watch', '10', '--count', '3', '--json']);
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n').map((l) => (JSON.parse(l) as { primary: string }).primary)).toEqual(['con-1', 'con-1', 'con-1']);
  });

  it('status --watch on a terminal: the screen cleared and the table drawn again each refresh', async () => {
    const r = await run(['status', '--connect', socket, '--watch', '10', '--count', '2'], { tty: true });
    expect(r).toMatchObject({ code: 0, err: '' });
    const frames = r.out.split('\x1b[2J\x1b[H');
    expect(frames).toHaveLength(3); // nothing before the first clear, then two frames
    expect(frames[0]).toBe('');
    for (const frame of frames.slice(1)) {
      expect(frame).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\nprimary con-1 /);
      expect(frame).toMatch(/^MEMBER\s+ROLE\s+STATE/m);
      expect(frame).toMatch(/^con-2\s+active\s+active/m);
      expect(frame).toMatch(/\nhealthy\n$/);
    }
  });

  it('status --watch (a child process) stopped with Ctrl-C: exit 0, no stack trace', async () => {
    const watch = startCli(['status', '--connect', socket, '--watch', '50']);
    await until(() => watch.out().split('\n').length > 2 || watch.child.exitCode !== null, 'status --watch to print twice', 30_000, 20);
    watch.child.kill('SIGINT');
    const { code, signal } = await watch.exited;
    expect({ code, signal }, watch.err()).toEqual({ code: 0, signal: null });
    expect(watch.err()).toBe('');
    expect(noStack(watch.out() + watch.err())).toBe(true);
    expect(watch.out().trim().split('\n').every((l) => Array.isArray((JSON.parse(l) as { members: unknown }).members))).toBe(true);
  });
});

describe('steering a running group', () => {
  it('standby on|off changes the role in the application', async () => {
    expect((await run(['standby', 'con-1', 'on', '--connect', socket])).code).toBe(0);
    expect(states()).toEqual(['con-1:standby:standby', 'con-2:active:active']);
    expect(app.primary).toBe('con-2');
    expect((await run(['standby', 'con-1', 'off', '--connect', socket])).code).toBe(0);
    expect(states()).toEqual(['con-1:active:active', 'con-2:active:active']);
  });

  it('add-member joins a token to the running group (its PINs from the application); remove-member takes it out', async () => {
    const t = bed.tokens[2]!;
    const add = await run(['add-member', '--connect', socket, '--module', t.modulePath, '--module-env', `SOFTHSM2_CONF=${t.confPath}`, '--label', t.label, '--role', 'standby']);
    expect(add).toMatchObject({ code: 0, out: 'con-3 joined\n', err: '' });
    expect(states()).toEqual(['con-1:active:active', 'con-2:active:active', 'con-3:standby:standby']);
    expect(await run(['remove-member', 'con-3', '--connect', socket])).toMatchObject({ code: 0, out: 'con-3 removed\n' });
    expect(states()[2]).toBe('con-3:standby:removed');
    const pin = await run(['add-member', '--connect', socket, '--member', JSON.stringify({ module: t.modulePath, token: { label: t.label }, soPin: t.soPin })]);
    expect(pin.code).toBe(2);
    expect(pin.err).not.toContain(t.soPin);
  });

  it('an unknown flag with --connect (a child process): exit 2, one line, no stack trace; the group untouched', async () => {
    const r = await spawnCli(['status', '--connect', socket, '--frobnicate']);
    expect(r).toEqual({ code: 2, out: '', err: "pkcs11-ha: unknown option '--frobnicate'\n" });
    expect(noStack(r.err)).toBe(true);
    expect(await run(['recover', 'con-2', '--connect', socket, '--jsn'])).toEqual({ code: 2, out: '', err: "pkcs11-ha: unknown option '--jsn'\n" });
  });

  it('add-member --member of a wrong type: the application refuses it (ERR_CONFIG over the socket), exit 2', async () => {
    const t = bed.tokens[2]!;
    const before = states();
    const badModule = await run(['add-member', '--connect', socket, '--member', JSON.stringify({ module: 5, token: { label: t.label } })]);
    expect(badModule).toMatchObject({ code: 2, out: '' });
    expect(badModule.err).toMatch(/^pkcs11-ha add-member: ERR_CONFIG: members\[\d+\]\.module: must be a path or \{ path, env \}, got 5\n$/);
    const badRole = await run(['add-member', '--connect', socket, '--member', JSON.stringify({ module: t.modulePath, token: { label: t.label }, role: 'primary' })]);
    expect(badRole).toMatchObject({ code: 2, out: '' });
    expect(badRole.err).toMatch(/^pkcs11-ha add-member: ERR_CONFIG: members\[\d+\]\.role: must be 'active' or 'standby', got "primary"\n$/);
    expect(states()).toEqual(before);
  });

  it('mistakes are usage errors (2): an unknown member, a missing endpoint', async () => {
    const unknown = await run(['recover', 'nobody', '--connect', socket]);
    expect(unknown).toMatchObject({ code: 2, err: 'pkcs11-ha recover: ERR_INVALID_ARGUMENT: no member named "nobody"\n' });
    const missing = await spawnCli(['status', '--connect', join(bed.dir, 'nothing.sock')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/^pkcs11-ha status: ERR_ADMIN: no admin endpoint at .*nothing\.sock \(ENOENT\)\n$/);
  });
});
