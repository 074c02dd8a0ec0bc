/**
 * The facade worker thread: opens the group and answers the facade's calls. Synchronous
 * callers block on shared memory meanwhile, so the group (member hosts, heartbeats,
 * deadlines, failover, recovery) keeps running here while they wait.
 *
 * Members' hosts and command threads are started from this thread with the register hook
 * taken out of the environment and the flags (`stripRegisterHook`): they never redirect
 * pkcs11js, and so never open a group of their own.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { HaGroup } from '../group/ha-group.js';
import { FacadeEngine } from './facade-engine.js';
import { toFailure } from './facade-error.js';
import { FOLLOW_BURST_MS, FOLLOW_MS, revive, SIGNAL_REPLY, SIGNAL_REQUESTS, writeSharedReply, type Batch, type CallReply, type CallRequest, type PipelinedCall, type FacadeWorkerData, type ReadyMessage } from './facade-protocol.js';
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
    Atomics.store(signal, SIGNAL_REPLY, -1);
    Atomics.notify(signal, SIGNAL_REPLY);
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
  const runPre = async (pre: readonly PipelinedCall[]): Promise<void> => {
    for (const p of pre) {
      try {
        await engine!.call(p.owner, p.fn, revive(p.args) as unknown[]);
      } catch (error) {
        engine!.deferFailure(p.fn, revive(p.args) as unknown[], error);
      }
    }
  };
  // Pipelined Inits run in the order they were made, and before any call that came after
  // them: a batch's calls start together, and one lane's Init may ride on another's call.
  let preTail: Promise<void> | undefined;
  const run = async (r: CallRequest): Promise<CallReply> => {
    if (r.pre !== undefined) {
      const pre = r.pre;
      const mine = (preTail ?? Promise.resolve()).then(() => runPre(pre));
      preTail = mine;
      await mine;
      if (preTail === mine) preTail = undefined;
    } else if (preTail !== undefined) await preTail;
    try {
      const value = await call(r);
      return { id: r.id, ok: true, value };
    } catch (error) {
      return { id: r.id, ok: false, failure: toFailure(error, r.fn) };
    }
  };
  // Synchronous calls: answered in shared memory when the answer is small and plain, else on
  // the sync port, then signalled there (the caller polls it through a short call, so the
  // notify seldom has a sleeper to wake).
  let burstStart = 0;
  const onSync = (r: CallRequest): void => {
    void run(r).then((reply) => {
      if (!writeSharedReply(data.signal, signal, reply)) data.syncPort.postMessage(reply);
      Atomics.store(signal, SIGNAL_REPLY, r.id);
      Atomics.notify(signal, SIGNAL_REPLY);
      followUp(r.id);
    });
  };
  // A loop of synchronous calls posts its next call as soon as it has the answer: looked
  // for here for a moment, it is taken at once instead of through this thread's event loop,
  // whose wake-up costs tens of microseconds on a VM (a fifth of a signature). Bounded, so
  // that timers and I/O (deadlines, heartbeats, member hosts) get their turn.
  const followUp = (answered: number): void => {
    const now = performance.now();
    if (now - burstStart > FOLLOW_BURST_MS) return;
    const end = now + FOLLOW_MS;
    for (let next = Atomics.load(signal, SIGNAL_REQUESTS); next === answered || next === 0; next = Atomics.load(signal, SIGNAL_REQUESTS)) {
      if (performance.now() > end) return;
    }
    const next = receiveMessageOnPort(data.syncPort) as { message: CallRequest } | undefined;
    if (next !== undefined) onSync(next.message);
  };
  data.syncPort.on('message', (r: CallRequest) => {
    burstStart = performance.now();
    onSync(r);
  });
  // Asynchronous calls come in batches (one per turn of the caller's event loop); their
  // answers go back in batches too: those ready in one microtask checkpoint, together.
  let outbox: CallReply[] = [];
  const flush = (): void => {
    const batch = outbox;
    outbox = [];
    data.asyncPort.postMessage(batch.length === 1 ? batch[0] : batch);
  };
  const answer = (reply: CallReply): void => {
    outbox.push(reply);
    if (outbox.length === 1) queueMicrotask(flush);
  };
  data.asyncPort.on('message', (m: Batch<CallRequest>) => {
    if (Array.isArray(m)) for (const r of m as readonly CallRequest[]) void run(r).then(answer);
    else void run(m as CallRequest).then(answer);
  });
}

if (parentPort !== null) void main();
