/**
 * The facade worker thread: opens the group and answers the facade's calls. Synchronous
 * callers block on shared memory meanwhile, so the group (member hosts, heartbeats,
 * deadlines, failover, recovery) keeps running here while they wait.
 *
 * Members' hosts and command threads are started from this thread with the register hook
 * taken out of the environment and the flags (`stripRegisterHook`): they never redirect
 * pkcs11js, and so never open a group of their own.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { HaGroup } from '../group/ha-group.js';
import { FacadeEngine } from './facade-engine.js';
import { toFailure } from './facade-error.js';
import { revive, type CallReply, type CallRequest, type FacadeWorkerData, type ReadyMessage } from './facade-protocol.js';
import { stripRegisterHook } from './hook-flags.js';

async function main(): Promise<void> {
  const data = workerData as FacadeWorkerData & { label: string };
  process.env['NODE_OPTIONS'] = stripRegisterHook(process.env['NODE_OPTIONS'] ?? '');
  if (process.env['NODE_OPTIONS'] === '') delete process.env['NODE_OPTIONS'];
  process.env['PKCS11_HA_FACADE_CHILD'] = '1';
  const signal = new Int32Array(data.signal);
  let engine: FacadeEngine | undefined;
  let group: HaGroup | undefined;
  const ready = (m: ReadyMessage): void => {
    data.syncPort.postMessage(m);
    Atomics.store(signal, 0, -1);
    Atomics.notify(signal, 0);
  };
  try {
    group = await HaGroup.open(data.config);
    engine = new FacadeEngine(group, data.label);
    ready({ ready: true });
  } catch (error) {
    ready({ ready: false, failure: toFailure(error, 'C_Initialize') });
    return;
  }
  const call = (r: CallRequest): Promise<unknown> => {
    if (r.fn === '__closeOwner') return engine!.closeOwner(r.owner);
    if (r.fn === '__closeGroup') return group!.close();
    return engine!.call(r.owner, r.fn, revive(r.args) as unknown[]);
  };
  const run = async (r: CallRequest): Promise<CallReply> => {
    // Pipelined Inits first, in order: what they did (or their failure) is there for this call.
    for (const p of r.pre ?? []) {
      try {
        await engine!.call(p.owner, p.fn, revive(p.args) as unknown[]);
      } catch (error) {
        engine!.deferFailure(p.fn, revive(p.args) as unknown[], error);
      }
    }
    try {
      const value = await call(r);
      return { id: r.id, ok: true, value };
    } catch (error) {
      return { id: r.id, ok: false, failure: toFailure(error, r.fn) };
    }
  };
  data.syncPort.on('message', (r: CallRequest) => {
    void run(r).then((reply) => {
      data.syncPort.postMessage(reply);
      Atomics.store(signal, 0, r.id);
      Atomics.notify(signal, 0);
    });
  });
  data.asyncPort.on('message', (r: CallRequest) => {
    void run(r).then((reply) => data.asyncPort.postMessage(reply));
  });
}

if (parentPort !== null) void main();
