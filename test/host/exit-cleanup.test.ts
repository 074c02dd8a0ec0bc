/**
 * Member host socket directories left by a process that exits without closing its group
 * are removed at its exit: a real child process opens a group on real member hosts and
 * calls process.exit(0). One killed outright (SIGKILL, no listener runs) leaves them to
 * its member hosts, which remove their own as they stop.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostSocketDirectory, removeLeftDirectories, removeOnExit } from '../../src/host/exit-cleanup.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { isGone } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

let bed: Testbed | undefined;
beforeAll(async () => {
  bed = await createTestbed({ count: 2 });
}, 60_000);
afterAll(async () => {
  await bed?.dispose();
});

/** Runs a fixture through tsx; resolves with its stdout and exit code. */
function run(fixture: string, args: string[]): Promise<{ out: string; code: number | null }> {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const child = spawn(process.execPath, ['--import', tsx, fileURLToPath(new URL(fixture, import.meta.url)), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (s: string) => (out += s));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ out, code })));
}

describe('socket directories at process exit', () => {
  it('a process that exits without closing its group leaves no member host socket directory', async () => {
    const { out, code } = await run('./exit-cleanup.fixture.ts', [JSON.stringify(bed!.memberConfigs())]);
    expect(code).toBe(0);
    const dirs = JSON.parse(out.trim()) as string[];
    expect(dirs).toHaveLength(2);
    for (const dir of dirs) {
      expect(dir).toContain('pkcs11-ha-host-');
      expect(existsSync(dir)).toBe(false);
    }
  }, 60_000);

  it('an application killed with SIGKILL: its member hosts stop and remove their own socket directories', async () => {
    // The application: opens a group on member hosts, prints each host's socket directory
    // and pid, and runs until killed.
    const module = (path: string) => JSON.stringify(pathToFileURL(fileURLToPath(new URL(path, import.meta.url))).href);
    const app = `
      const { dirname } = await import('node:path');
      const { HaGroup } = await import(${module('../../src/group/ha-group.ts')});
      const { HostTransport } = await import(${module('../../src/host/host-transport.ts')});
      const { internalsOf } = await import(${module('../../src/testing.ts')});
      const group = await HaGroup.open({ members: JSON.parse(process.env.TEST_MEMBERS), transport: 'host' });
      const hosts = internalsOf(group).members.map((m) => (m.transport instanceof HostTransport ? { dir: dirname(m.transport.socketPath), pid: m.transport.pid } : undefined));
      process.stdout.write(JSON.stringify(hosts) + '\\n');
      setInterval(() => undefined, 60_000);
    `;
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const child = spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', app], { env: { ...process.env, TEST_MEMBERS: JSON.stringify(bed!.memberConfigs()) }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => (out += s));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    try {
      await until(() => out.includes('\n') || child.exitCode !== null, 'the application to open its group', 45_000, 20);
      const hosts = JSON.parse(out.trim()) as { dir: string; pid: number }[];
      expect(hosts).toHaveLength(2);
      for (const { dir, pid } of hosts) {
        expect(dir).toContain('pkcs11-ha-host-');
        expect(existsSync(dir)).toBe(true);
        expect(isGone(pid)).toBe(false);
      }
      process.kill(child.pid!, 'SIGKILL');
      expect(await exited).toBe('SIGKILL');
      await until(() => hosts.every(({ dir }) => !existsSync(dir)), `the socket directories ${hosts.map((h) => h.dir).join(', ')} to be removed`, 15_000, 20);
      await until(() => hosts.every(({ pid }) => isGone(pid)), 'the member hosts to exit', 15_000, 20);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }, 90_000);

  it('a member host removes only the private directory it was given', () => {
    const parent = mkdtempSync(join(tmpdir(), 'pkcs11-ha-exit-test-'));
    try {
      const own = join(parent, 'pkcs11-ha-host-Ab12Cd');
      mkdirSync(own, { mode: 0o700 });
      expect(hostSocketDirectory(join(own, 'host.sock'))).toBe(own);
      // Anything else is left alone: another name, another socket name, a link, no directory, none given.
      const other = join(parent, 'my-app');
      mkdirSync(other);
      expect(hostSocketDirectory(join(other, 'host.sock'))).toBeUndefined();
      expect(hostSocketDirectory(join(own, 'admin.sock'))).toBeUndefined();
      expect(hostSocketDirectory(join(parent, 'pkcs11-ha-host-', 'host.sock'))).toBeUndefined();
      const link = join(parent, 'pkcs11-ha-host-Link01');
      symlinkSync(other, link);
      expect(hostSocketDirectory(join(link, 'host.sock'))).toBeUndefined();
      const file = join(parent, 'pkcs11-ha-host-File01');
      writeFileSync(file, '');
      expect(hostSocketDirectory(join(file, 'host.sock'))).toBeUndefined();
      expect(hostSocketDirectory(join(parent, 'pkcs11-ha-host-Gone01', 'host.sock'))).toBeUndefined();
      expect(hostSocketDirectory(undefined)).toBeUndefined();
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it('removeOnExit forgets a directory removed the normal way', () => {
    const kept = mkdtempSync(join(tmpdir(), 'pkcs11-ha-exit-test-'));
    try {
      const forget = removeOnExit(kept);
      forget();
      // What the exit listener would do now: the forgotten directory is not touched.
      removeLeftDirectories();
      expect(existsSync(kept)).toBe(true);
      const removed = mkdtempSync(join(tmpdir(), 'pkcs11-ha-exit-test-'));
      removeOnExit(removed);
      removeLeftDirectories();
      expect(existsSync(removed)).toBe(false);
    } finally {
      rmSync(kept, { recursive: true, force: true });
    }
  });
});
