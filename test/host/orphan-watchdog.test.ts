/**
 * The orphan watchdog on real processes: a process whose main thread is blocked for good
 * (a stand-in for a PKCS#11 call that hangs) still dies once its parent is gone.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isGone } from '../helpers/processes.js';
import { until } from '../helpers/until.js';


describe('startOrphanWatchdog', () => {
  it('kills a process whose main thread is hung once its parent is gone', async () => {
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const fixture = fileURLToPath(new URL('./orphan-watchdog.fixture.ts', import.meta.url));
    const parent = spawn(process.execPath, ['--import', tsx, fixture], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => parent.once('exit', resolve));
    let out = '';
    parent.stdout.setEncoding('utf8');
    parent.stdout.on('data', (s: string) => (out += s));
    await until(() => out.includes('\n') || parent.exitCode !== null, 'the parent reports its hung child');
    const pid = Number(out.trim());
    expect(Number.isInteger(pid) && pid > 0).toBe(true);
    try {
      // Still there while its parent lives (its main thread is hung, the watchdog waits).
      expect(isGone(pid)).toBe(false);
      parent.kill('SIGKILL');
      await exited;
      await until(() => isGone(pid), 'the orphaned, hung child is killed by its watchdog');
    } finally {
      // Only if the test failed: the child is ours (our fixture started it).
      if (!isGone(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});
