/**
 * The caller's side of the facade worker: starts the worker that owns the group (once
 * per process and group configuration, shared by every `PKCS11` object that initialises
 * it, closed with the last C_Finalize), and carries calls to it in two ways:
 *
 * - synchronous: the request goes on the sync port and this thread blocks on a
 *   SharedArrayBuffer (a brief spin, then `Atomics.wait`) until the worker has answered:
 *   in that shared memory when the answer is small and plain (facade-protocol.ts), else on
 *   the sync port, where this thread takes it with `receiveMessageOnPort`. The group keeps running in
 *   the worker meanwhile: failover and re-runs happen during a synchronous call.
 * - asynchronous (callback and promise forms): the async port, answered through the event
 *   loop. The port holds the process open only while calls are pending.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { GroupConfig } from '../group/group-config.js';
import { pkcs11Failure } from './facade-error.js';
import { readSharedReply, revive, SIGNAL_BYTES, SIGNAL_REPLY, SIGNAL_REQUESTS, type Batch, type CallReply, type CallRequest, type FacadeFailure, type FacadeWorkerData, type PipelinedCall, type ReadyMessage } from './facade-protocol.js';
import { stripHookArgs, stripRegisterHook } from './hook-flags.js';

/** A call's failure, carried to the `PKCS11` method that turns it into pkcs11js's error. */
export class CallFailure extends Error {
  constructor(readonly failure: FacadeFailure) {
    super(failure.kind === 'pkcs11' ? failure.ckr : failure.message);
  }
}

/** The functions whose answer is a new session or object handle. */
const GIVES_HANDLE = new Set(['C_OpenSession', 'C_CreateObject', 'C_CopyObject', 'C_GenerateKey', 'C_UnwrapKey', 'C_DeriveKey']);

/**
 * How long a synchronous caller polls for its answer before it sleeps (ms). A thread put
 * to sleep takes 0.1-0.4 ms to wake on a VM (inline-slicer.ts), longer than a whole
 * signature; the caller is blocked either way, so it keeps its core for the common short
 * call and sleeps only through long ones (key generation, a failover).
 */
const SPIN_MS = 1;
/** A synchronous call that gets no answer for this long fails with CKR_DEVICE_ERROR (the worker is gone). */
const SYNC_LIMIT_MS = 10 * 60_000;
/** How long C_Initialize waits for the group to open. */
const OPEN_LIMIT_MS = 120_000;

function workerEntry(): { file: string; eval: boolean; execArgv: string[] } {
  const js = fileURLToPath(new URL('./facade-worker.js', import.meta.url));
  const execArgv = stripHookArgs(process.execArgv);
  if (existsSync(js)) return { file: js, eval: false, execArgv };
  // Running from the TypeScript sources (tests, a clone): register tsx in the worker, then
  // load it (as the in-process transport's command workers do).
  const tsxApi = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const ts = new URL('./facade-worker.ts', import.meta.url).href;
  return { file: `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); });`, eval: true, execArgv };
}

/** One group, opened in its worker, shared by the PKCS11 objects that initialised it. */
export class GroupClient {
  static readonly #open = new Map<string, GroupClient>();

  readonly #key: string;
  readonly #worker: Worker;
  readonly #shared: SharedArrayBuffer;
  readonly #signal: Int32Array;
  readonly #sync: MessagePort;
  readonly #async: MessagePort;
  readonly #pending = new Map<number, { fn: string; resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 0;
  /** Asynchronous calls of this turn of the event loop, posted together (#flush). */
  #outbox: CallRequest[] = [];
  /** Pipelined calls waiting for the next request to carry them. */
  #pipelined: PipelinedCall[] = [];
  /** Session and object handles the worker gave out (never reused): a handle not in it is refused at once, not pipelined. */
  readonly #given = new Set<number>();
  #refs = 0;
  #dead: FacadeFailure | undefined;

  private constructor(key: string, config: GroupConfig, label: string) {
    this.#key = key;
    const shared = new SharedArrayBuffer(SIGNAL_BYTES);
    this.#shared = shared;
    this.#signal = new Int32Array(shared);
    const sync = new MessageChannel();
    const async = new MessageChannel();
    this.#sync = sync.port1;
    this.#async = async.port1;
    const { file, eval: isEval, execArgv } = workerEntry();
    const data: FacadeWorkerData & { label: string } = { config, label, signal: shared, syncPort: sync.port2, asyncPort: async.port2 };
    // The worker, and the hosts and threads it starts, run without the register hook.
    const env: NodeJS.ProcessEnv = { ...process.env, PKCS11_HA_FACADE_CHILD: '1', NODE_OPTIONS: stripRegisterHook(process.env['NODE_OPTIONS'] ?? '') };
    if (env['NODE_OPTIONS'] === '') delete env['NODE_OPTIONS'];
    this.#worker = new Worker(file, { workerData: data, transferList: [sync.port2, async.port2], execArgv, eval: isEval, env });
    this.#worker.unref();
    this.#worker.on('error', (error) => this.#die(`the facade worker failed: ${error.message}`));
    this.#worker.on('exit', () => this.#die('the facade worker exited'));
    this.#async.on('message', (m: Batch<CallReply>) => {
      if (Array.isArray(m)) for (const r of m as readonly CallReply[]) this.#onReply(r);
      else this.#onReply(m as CallReply);
    });
    this.#async.unref();
  }

  /**
   * The group for `key`, opened now (blocking until it is) or shared with the PKCS11
   * objects that opened it; counts one more user.
   *
   * @throws {@link CallFailure} when the group cannot open
   */
  static acquire(key: string, config: GroupConfig, label: string): GroupClient {
    let client = GroupClient.#open.get(key);
    if (client === undefined) {
      client = new GroupClient(key, config, label);
      try {
        client.#waitReady();
      } catch (error) {
        void client.#worker.terminate();
        throw error;
      }
      GroupClient.#open.set(key, client);
    }
    client.#refs++;
    return client;
  }

  /** Ends `owner`'s sessions; closes the group and its worker when no user is left. */
  release(owner: number): void {
    try {
      this.callSync(owner, '__closeOwner', []);
      if (--this.#refs > 0) return;
      GroupClient.#open.delete(this.#key);
      this.callSync(owner, '__closeGroup', []);
    } finally {
      if (this.#refs <= 0) void this.#worker.terminate();
    }
  }

  /**
   * Runs one call, blocking this thread until the worker answers.
   *
   * @throws {@link CallFailure}
   */
  callSync(owner: number, fn: string, args: readonly unknown[]): unknown {
    if (this.#dead) throw new CallFailure(this.#dead);
    // Asynchronous calls made before this one are posted first, as they were made first.
    if (this.#outbox.length > 0) this.#flush();
    const id = this.#id();
    this.#sync.postMessage(this.#request(id, owner, fn, args));
    // Announced after the post: the worker, looking for a next call, takes it at once
    // (facade-worker.ts). Not while asynchronous calls are on their way: they came first.
    Atomics.store(this.#signal, SIGNAL_REQUESTS, this.#pending.size === 0 ? id : 0);
    this.#wait(id, SYNC_LIMIT_MS);
    const shared = readSharedReply(this.#shared, this.#signal);
    if (shared !== 'port') return this.#note(fn, shared.value);
    const reply = this.#take(id);
    if (!reply.ok) throw new CallFailure(reply.failure);
    return this.#note(fn, revive(reply.value));
  }

  /** True when every handle was given out by the worker (it may have been closed or destroyed since). */
  gave(...handles: readonly number[]): boolean {
    return handles.every((h) => this.#given.has(h));
  }

  /** Remembers the handles a call gave out. */
  #note(fn: string, value: unknown): unknown {
    if (GIVES_HANDLE.has(fn) && typeof value === 'number') this.#given.add(value);
    else if (fn === 'C_FindObjects' && Array.isArray(value)) for (const h of value as number[]) this.#given.add(h);
    else if (fn === 'C_GenerateKeyPair') {
      const pair = value as { publicKey: number; privateKey: number };
      this.#given.add(pair.publicKey).add(pair.privateKey);
    }
    return value;
  }

  /** Runs one call without blocking. */
  callAsync(owner: number, fn: string, args: readonly unknown[]): Promise<unknown> {
    if (this.#dead) return Promise.reject(new CallFailure(this.#dead));
    const id = this.#id();
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { fn, resolve, reject });
      if (this.#pending.size === 1) this.#async.ref();
      this.#outbox.push(this.#request(id, owner, fn, args));
      if (this.#outbox.length === 1) queueMicrotask(this.#flush);
    });
  }

  /** Posts the calls made in this turn of the event loop as one message: one structured clone and one wake-up for the worker, not one per call. */
  readonly #flush = (): void => {
    const batch = this.#outbox;
    this.#outbox = [];
    if (batch.length > 0) this.#async.postMessage(batch.length === 1 ? batch[0] : batch);
  };

  /**
   * A call whose answer nobody waits for: it goes with the next request (whichever port,
   * so it always runs before that request), and costs no round trip of its own. A
   * failure is kept by the worker for the call it prepares (facade-engine.ts).
   */
  pipeline(owner: number, fn: string, args: readonly unknown[]): void {
    if (this.#dead) throw new CallFailure(this.#dead);
    this.#pipelined.push({ owner, fn, args });
  }

  #request(id: number, owner: number, fn: string, args: readonly unknown[]): CallRequest {
    if (this.#pipelined.length === 0) return { id, owner, fn, args };
    const pre = this.#pipelined;
    this.#pipelined = [];
    return { id, owner, fn, args, pre };
  }

  #id(): number {
    this.#nextId = this.#nextId >= 0x7ffffff0 ? 1 : this.#nextId + 1;
    return this.#nextId;
  }

  /** Blocks until the worker signals `id` (polling for up to SPIN_MS first, then sleeping). */
  #wait(id: number, limitMs: number): void {
    const spinEnd = performance.now() + SPIN_MS;
    do {
      for (let i = 0; i < 512; i++) if (Atomics.load(this.#signal, SIGNAL_REPLY) === id) return;
    } while (performance.now() < spinEnd);
    const start = Date.now();
    for (let v = Atomics.load(this.#signal, SIGNAL_REPLY); v !== id; v = Atomics.load(this.#signal, SIGNAL_REPLY)) {
      if (Date.now() - start > limitMs) throw new CallFailure(pkcs11Failure('CKR_DEVICE_ERROR', 'the facade worker did not answer'));
      Atomics.wait(this.#signal, SIGNAL_REPLY, v, 1000);
    }
  }

  /** Takes the answer the worker posted on the sync port before it signalled. */
  #take(id: number): CallReply {
    for (;;) {
      const m = receiveMessageOnPort(this.#sync) as { message: CallReply | ReadyMessage } | undefined;
      if (m === undefined) throw new CallFailure(pkcs11Failure('CKR_DEVICE_ERROR', 'the facade worker answered nothing'));
      if ('id' in m.message && m.message.id === id) return m.message;
    }
  }

  #waitReady(): void {
    // The worker signals -1 once it posted whether the group opened.
    try {
      this.#wait(-1, OPEN_LIMIT_MS);
    } catch {
      throw new CallFailure(pkcs11Failure('CKR_DEVICE_ERROR', 'the group did not open in time'));
    }
    const m = receiveMessageOnPort(this.#sync) as { message: ReadyMessage } | undefined;
    if (m === undefined) throw new CallFailure(pkcs11Failure('CKR_DEVICE_ERROR', 'the facade worker stopped while the group opened'));
    if (!m.message.ready) throw new CallFailure(m.message.failure);
  }

  #onReply(m: CallReply): void {
    const p = this.#pending.get(m.id);
    if (p === undefined) return;
    this.#pending.delete(m.id);
    if (this.#pending.size === 0) this.#async.unref();
    if (m.ok) p.resolve(this.#note(p.fn, revive(m.value)));
    else p.reject(new CallFailure(m.failure));
  }

  #die(reason: string): void {
    this.#dead ??= pkcs11Failure('CKR_DEVICE_ERROR', reason);
    // A C_Initialize after the last C_Finalize may have opened the group again meanwhile.
    if (GroupClient.#open.get(this.#key) === this) GroupClient.#open.delete(this.#key);
    for (const p of this.#pending.values()) p.reject(new CallFailure(this.#dead));
    this.#pending.clear();
    this.#async.unref();
  }
}
