/**
 * The admin endpoint and the CLI: an application opens its group with
 * `admin: { socket }`, and an operator's `pkcs11-ha ... --connect <socket>` reads and
 * steers that live group from another process. Here the CLI runs as a child process:
 * `status --connect` (JSON, since its output is not a terminal), then `check --connect`
 * on a healthy group (exit 0), after a member host was killed (exit 1, degraded), and
 * after `recover <member> --connect` brought the member back (exit 0).
 *
 *   npx tsx examples/admin-cli.ts
 *
 * Makes its own SoftHSM2 tokens in a temporary directory and removes them; exits 0 when
 * every CLI answer was as expected. In an application the imports are `pkcs11-ha`,
 * `pkcs11-ha/testbed` and (for the pid) `pkcs11-ha/testing`, and the command is
 * `npx pkcs11-ha`.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HaGroup, HostTransport, type GroupStatus } from '../src/index.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../src/testing.js';

/** The `pkcs11-ha` command of this clone (it runs the TypeScript source). */
const CLI = fileURLToPath(new URL('../bin/pkcs11-ha.js', import.meta.url));

/** Runs `pkcs11-ha <args>` and returns its exit code and output. */
function pkcs11ha(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  console.log(`$ pkcs11-ha ${args.join(' ')}`);
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

function expectExit(result: { code: number; out: string; err: string }, code: number): void {
  const text = (result.out + result.err).trim();
  console.log(`  exit ${result.code}${text.includes('\n') ? '' : `: ${text}`}`);
  if (result.code !== code) throw new Error(`expected exit ${code}, got ${result.code}: ${text}`);
}

/** The pid of the member host serving `name` now. */
function hostPid(group: HaGroup, name: string): number {
  const shown = group.status().members.find((m) => m.name === name) as { pid?: unknown } | undefined;
  if (typeof shown?.pid === 'number') return shown.pid;
  const transport = internalsOf(group).members.find((m) => m.name === name)?.transport;
  if (!(transport instanceof HostTransport) || transport.pid === undefined) throw new Error(`${name} runs on no member host`);
  return transport.pid;
}

async function until(done: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const bed = await createTestbed({ count: 3, labelPrefix: 'ops' });
let group: HaGroup | undefined;
try {
  // The socket goes in a directory only this user can reach: it authenticates by file permissions.
  const socket = join(bed.dir, 'pkcs11-ha.sock');
  await HaGroup.initDomain({ members: bed.memberConfigs() });
  // Background recovery off, so that the member stays failed until the operator recovers it.
  group = await HaGroup.open({ members: bed.memberConfigs(), admin: { socket }, recovery: { maxAttempts: 0 } });
  const g = group;
  const session = g.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);

  const status = await pkcs11ha('status', '--connect', socket);
  expectExit(status, 0);
  const seen = JSON.parse(status.out) as GroupStatus;
  console.log(`  primary ${seen.primary}; ${seen.members.map((m) => `${m.name} ${m.state.kind}`).join(', ')}`);
  if (seen.members.length !== 3 || !seen.loggedIn) throw new Error('status --connect did not show the live group');

  expectExit(await pkcs11ha('check', '--connect', socket), 0);

  const victim = seen.members[1]!.name;
  console.log(`(the application's ${victim} host is killed)`);
  process.kill(hostPid(g, victim), 'SIGKILL');
  await until(() => g.status().members[1]!.state.kind === 'failed', `${victim} to fail`);
  expectExit(await pkcs11ha('check', '--connect', socket), 1);

  expectExit(await pkcs11ha('recover', victim, '--connect', socket), 0);
  expectExit(await pkcs11ha('check', '--connect', socket), 0);
  console.log('admin-cli: ok');
} catch (error) {
  console.error('admin-cli: FAILED:', error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  await group?.close();
  await bed.dispose();
}
