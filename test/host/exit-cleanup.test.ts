/**
 * Member host socket directories left by a process that exits without closing its group
 * are removed at its exit: a real child process opens a group on real member hosts and
 * calls process.exit(0).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeLeftDirectories, removeOnExit } from '../../src/host/exit-cleanup.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';

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
