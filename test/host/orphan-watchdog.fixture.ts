/**
 * A parent for the orphan-watchdog test: it starts a child (this same file with `child`
 * in argv) that runs the watchdog and then blocks its main thread for good, as a hung
 * PKCS#11 call would; it prints the child's pid as one line and waits to be killed.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startOrphanWatchdog } from '../../src/host/orphan-watchdog.js';

if (process.argv[2] === 'child') {
  startOrphanWatchdog({ parentPid: process.ppid, intervalMs: 20, graceMs: 100 });
  process.stdout.write('ready\n', () => {
    // A main thread that never comes back: no event, timer or signal handler runs here.
    for (;;) {
      /* hung */
    }
  });
} else {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), 'child'], { stdio: ['ignore', 'pipe', 'inherit'] });
  child.stdout.setEncoding('utf8');
  child.stdout.once('data', () => process.stdout.write(`${child.pid}\n`));
  setInterval(() => undefined, 1 << 30);
}
