/**
 * One process of the machine's limit (bench/limit.ts): pkcs11js used directly, with SYNC
 * calls, on its own SoftHSM token. Started with child_process.fork by the parent, which
 * drives it over the IPC channel:
 *
 *   parent -> { type: 'init', token, keys }     child -> { type: 'ready' }
 *   parent -> { type: 'run', op, startAt, warmupMs, durationMs }
 *                                               child -> { type: 'result', rate, p50Ms, p99Ms, ops }
 *   parent -> { type: 'close' }                 the child closes its sessions and exits
 *
 * Any failure answers { type: 'error', message } and the child exits non-zero.
 * `startAt` is an epoch time in ms (performance.timeOrigin + performance.now()), so that
 * every child starts its loop at the same instant, whatever the IPC delays.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkDirect, directSync, fromPortable, openDirect, opSpecs, type Direct, type DirectToken, type KeyedOpName, type OpName, type OpSpec, type PortableKey } from './ops.js';
import { syncLoop } from './harness.js';

/** Messages from the parent. */
export type LimitRequest =
  | { readonly type: 'init'; readonly token: DirectToken; readonly keys: readonly PortableKey[] }
  | { readonly type: 'run'; readonly op: KeyedOpName; readonly startAt: number; readonly warmupMs: number; readonly durationMs: number }
  | { readonly type: 'close' };

/** Messages to the parent. */
export type LimitReply =
  | { readonly type: 'ready' }
  | { readonly type: 'result'; readonly rate: number; readonly p50Ms: number; readonly p99Ms: number; readonly ops: number }
  | { readonly type: 'error'; readonly message: string };

const epochNow = (): number => performance.timeOrigin + performance.now();

function reply(message: LimitReply): void {
  process.send!(message);
}

let direct: Direct | undefined;
let specs: Map<OpName, OpSpec> | undefined;
const neverAborted = new AbortController().signal;

async function handle(request: LimitRequest): Promise<void> {
  switch (request.type) {
    case 'init': {
      specs = opSpecs(fromPortable(request.keys));
      direct = openDirect(request.token, 1, specs);
      for (const spec of specs.values()) if (spec.kind !== 'keygen') checkDirect(direct, spec);
      reply({ type: 'ready' });
      return;
    }
    case 'run': {
      if (direct === undefined || specs === undefined) throw new Error('run before init');
      const spec = specs.get(request.op)!;
      if (spec.kind === 'keygen') throw new Error(`${request.op} is not a keyed workload`);
      // Sleep most of the wait, then spin the last 2 ms: a timer alone can be late by a
      // few ms, which would let one child start alone.
      const wait = request.startAt - epochNow() - 2;
      if (wait > 0) await sleep(wait);
      while (epochNow() < request.startAt) {
        /* spin */
      }
      const m = syncLoop(() => directSync(direct!, spec, spec.params()), { warmupMs: request.warmupMs, durationMs: request.durationMs, signal: neverAborted });
      checkDirect(direct, spec); // a broken path cannot pass as a fast one
      reply({ type: 'result', rate: m.rate, p50Ms: m.p50Ms, p99Ms: m.p99Ms, ops: m.ops });
      return;
    }
    case 'close':
      direct?.close();
      direct = undefined;
      process.disconnect();
      return;
  }
}

if (process.send === undefined) {
  console.error('bench/limit-child is started by bench/limit (child_process.fork), not by hand');
  process.exit(2);
}
process.on('message', (request: LimitRequest) => {
  handle(request).catch((error: unknown) => {
    reply({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exitCode = 1;
    process.disconnect();
  });
});
// The parent going away (Ctrl-C, a crash) must not leave this process behind.
process.on('disconnect', () => {
  try {
    direct?.close();
  } finally {
    process.exit();
  }
});
