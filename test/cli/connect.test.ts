/**
 * The `pkcs11-ha` CLI on a running application's group, through its admin endpoint
 * (`--connect <socket>`), over real SoftHSM2 tokens: the application here is this test,
 * which opens the group with `admin: { socket }`; the CLI runs as a child process where
 * its exit code and stderr matter, in this process elsewhere.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';
import { noStack, run, spawnCli } from './run-cli.js';

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

  it('a failed member that owes: check exits 1 with why; sync cannot settle it (1); recover brings it back (0)', async () => {
    internalsOf(app).members[1]!.fail('injected by the test');
    await session.generateKey('AES_KEY_GEN', { label: 'con-owed', token: true, valueLen: 32, encrypt: true, decrypt: true });
    const check = await spawnCli(['check', '--connect', socket]);
    expect(check.code).toBe(1);
    expect(check.out).toBe('degraded: 1/2 members serve, primary con-1; con-2 failed: injected by the test; con-2 owes 1 item\n');
    expect(noStack(check.out + check.err)).toBe(true);

    const sync = await run(['sync', '--connect', socket]);
    expect(sync.code).toBe(1);
    expect((JSON.parse(sync.out) as { owed: object }).owed).toEqual({ 'con-2': 1 });

    expect(await run(['recover', 'con-2', '--connect', socket])).toMatchObject({ code: 0, out: 'con-2 serves\n' });
    expect(app.status().owed).toEqual({});
    expect(await run(['check', '--connect', socket])).toMatchObject({ code: 0, out: 'healthy: 2/2 members serve, primary con-1\n' });
    expect(await run(['sync', '--connect', socket])).toMatchObject({ code: 0, err: '' });
  });

  it('status --watch --json streams the live status until --count', async () => {
    const r = await run(['status', '--connect', socket, '--watch', '10', '--count', '3', '--json']);
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n').map((l) => (JSON.parse(l) as { primary: string }).primary)).toEqual(['con-1', 'con-1', 'con-1']);
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

  it('mistakes are usage errors (2): an unknown member, a missing endpoint', async () => {
    const unknown = await run(['recover', 'nobody', '--connect', socket]);
    expect(unknown).toMatchObject({ code: 2, err: 'pkcs11-ha recover: ERR_INVALID_ARGUMENT: no member named "nobody"\n' });
    const missing = await spawnCli(['status', '--connect', join(bed.dir, 'nothing.sock')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/^pkcs11-ha status: ERR_ADMIN: no admin endpoint at .*nothing\.sock \(ENOENT\)\n$/);
  });
});
