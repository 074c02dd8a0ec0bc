/**
 * A thread that ends this process when its parent has been gone for `graceMs`.
 *
 * A member host normally stops by itself when its parent goes away (the IPC channel's
 * 'disconnect', handled on the main thread). With short calls made inline, a call that
 * hangs in the module blocks the main thread, which then never sees the parent go: the
 * orphaned host would keep its process and token sessions forever. This thread still
 * runs then, and SIGKILL is the one way to stop a process whose main thread is stuck.
 */
import { Worker } from 'node:worker_threads';

/** Options of {@link startOrphanWatchdog}. */
export interface OrphanWatchdogOptions {
  /** The parent's pid now: once `process.ppid` differs, the parent is gone (the process was re-parented). */
  readonly parentPid: number;
  /** How often to look. */
  readonly intervalMs: number;
  /** How long the process may take to stop by itself after its parent went, before it is killed. */
  readonly graceMs: number;
}

// CommonJS, evaluated in the thread: no module file to find from a compiled or a tsx run.
const WATCHDOG = `
const { workerData } = require('node:worker_threads');
let goneSince;
setInterval(() => {
  if (process.ppid === workerData.parentPid) return;
  goneSince ??= Date.now();
  if (Date.now() - goneSince >= workerData.graceMs) process.kill(process.pid, 'SIGKILL');
}, workerData.intervalMs);
`;

/** A running watchdog. */
export interface OrphanWatchdog {
  /** Stops the thread. */
  stop(): Promise<void>;
}

/**
 * Starts the watchdog thread. It never keeps the process alive by itself (it is unref'd).
 */
export function startOrphanWatchdog(options: OrphanWatchdogOptions): OrphanWatchdog {
  const worker = new Worker(WATCHDOG, { eval: true, workerData: { ...options } });
  worker.unref();
  return {
    stop: async () => {
      await worker.terminate();
    },
  };
}
