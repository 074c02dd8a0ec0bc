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
import { checkDirect, directSync, fromPortable, openDirect, opSpecs, type Direct, type DirectToken, type KeyedOpName, type OpName, type OpSpec, type PortableKey } from './ops.js';
import { serveParent, waitUntilEpoch } from './fork-ipc.js';
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
      await waitUntilEpoch(request.startAt);
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

serveParent('bench/limit-child', 'bench/limit', handle, () => {
  try {
    direct?.close();
  } finally {
    process.exit();
  }
});
