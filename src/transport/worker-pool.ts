/**
 * A small pool of command workers for one loaded module, with batching.
 *
 * Requests queue on the main thread and leave in batches of at most `maxBatch`, with at
 * most `batchesInFlight` batches per worker: two in flight means a worker never waits
 * while the main thread resolves the previous batch's results (0.69 -> 0.91 of sync
 * throughput for AES-GCM in calibration; see SOFTHSM-FACTS.md).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { Command } from '../pkcs11/commands.js';
import { CommandFailedError } from './transport.js';
import type { BatchReply, BatchRequest, CommandOutcome } from './worker-protocol.js';
import { compactForPost, reviveBuffers } from './wire.js';
import { decodeReply, encodeRequest, isFrameCommand } from './frame-codec.js';

/** The pool's threads are gone (terminated, crashed, or the pool was closed). */
export class WorkerPoolClosedError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'WorkerPoolClosedError';
  }
}

interface Pending {
  readonly command: Command;
  /** Batched with others, on the hot threads only (see {@link RunOptions.long}). */
  readonly hot: boolean;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
}

interface Lane {
  readonly worker: Worker;
  readonly replies: MessagePort;
  readonly batches: Map<number, Pending[]>;
  /** Ids of the batches in flight that hold a long command (travelling alone). */
  readonly long: Set<number>;
}

/** Options of a {@link WorkerPool}. */
export interface WorkerPoolOptions {
  /** Threads running commands. @default 2 */
  readonly threads?: number;
  /** Most commands in one batch. @default 8 */
  readonly maxBatch?: number;
  /** Most batches outstanding per thread. @default 2 */
  readonly batchesInFlight?: number;
  /**
   * Threads that take hot commands (encrypt, decrypt, sign, verify, digest): the first
   * this many; the others take only long commands. Why: when the calling thread runs hot
   * commands itself, a hot thread per spare core is all that helps, and more threads than
   * cores only take CPU from the calling thread. @default threads
   */
  readonly hotThreads?: number;
}

/** Options of {@link WorkerPool.run}. */
export interface RunOptions {
  /**
   * Run a hot command (encrypt, decrypt, sign, verify, digest) as a long one: alone, on any
   * thread, the cold ones first. For calls known to take milliseconds (an RSA-4096
   * signature): batched on the hot threads only, they would queue behind each other while
   * a cold thread sits idle. Any other command is long anyway.
   */
  readonly long?: boolean;
}

function workerEntry(): { entry: URL | string; eval: boolean } {
  const js = new URL('./command-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return { entry: js, eval: false };
  // Running from TypeScript sources (tests, tsx): register tsx in the worker, then load it.
  // require.resolve gives tsx's CommonJS entry; its ESM twin sits beside it.
  const tsxApi = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const ts = new URL('./command-worker.ts', import.meta.url).href;
  return { entry: `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); });`, eval: true };
}

/** Runs commands on worker threads that share one loaded module. */
export class WorkerPool {
  readonly #lanes: Lane[] = [];
  readonly #queue: Pending[] = [];
  readonly #maxBatch: number;
  readonly #batchesInFlight: number;
  #hotLanes = 0;
  #nextBatchId = 1;
  #flushScheduled = false;
  #closed: string | undefined;
  #onFailure: ((error: Error) => void) | undefined;

  private constructor(options: WorkerPoolOptions) {
    this.#maxBatch = options.maxBatch ?? 8;
    this.#batchesInFlight = options.batchesInFlight ?? 2;
  }

  /**
   * Starts the threads and waits until each has loaded the module.
   * @param onFailure called once if a thread dies unexpectedly (the pool is then closed)
   */
  static async start(modulePath: string, options: WorkerPoolOptions, onFailure?: (error: Error) => void): Promise<WorkerPool> {
    const pool = new WorkerPool(options);
    pool.#onFailure = onFailure;
    const { entry, eval: isEval } = workerEntry();
    const threads = options.threads ?? 2;
    pool.#hotLanes = Math.max(1, Math.min(threads, options.hotThreads ?? threads));
    const online: Promise<void>[] = [];
    for (let i = 0; i < threads; i++) {
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(entry, { workerData: { modulePath, replyPort: port2 }, transferList: [port2], eval: isEval });
      const lane: Lane = { worker, replies: port1, batches: new Map(), long: new Set() };
      pool.#lanes.push(lane);
      // Answers come on a channel of their own, so that poll() can take them while the
      // calling thread is busy (a worker's own port delivers only through the event loop).
      port1.on('message', (reply: BatchReply) => pool.#onReply(lane, reply));
      worker.on('error', (error) => pool.#fail(`command worker failed: ${error.message}`));
      worker.on('exit', (code) => pool.#fail(`command worker exited with code ${code}`));
      online.push(new Promise((resolve, reject) => {
        worker.once('online', () => resolve());
        worker.once('error', reject);
      }));
    }
    try {
      await Promise.all(online);
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  /**
   * Takes the answers that have arrived and settles their commands now, without waiting
   * for the event loop (which a thread busy with its own calls reaches only between them).
   */
  poll(): void {
    for (const lane of this.#lanes) {
      // Nothing out on this thread: nothing to take (the common case of an inline caller).
      while (lane.batches.size > 0) {
        const m = receiveMessageOnPort(lane.replies);
        if (m === undefined) break;
        this.#onReply(lane, m.message as BatchReply);
      }
    }
  }

  /** Commands queued or running. */
  get pending(): number {
    let n = this.#queue.length;
    for (const lane of this.#lanes) for (const batch of lane.batches.values()) n += batch.length;
    return n;
  }

  /** Threads that take hot commands. */
  get hotThreads(): number {
    return this.#hotLanes;
  }

  /** Hot commands queued or running (a long command always travels alone, in a batch of its own). */
  get hotPending(): number {
    let n = 0;
    for (const p of this.#queue) if (p.hot) n++;
    for (const lane of this.#lanes) for (const [id, batch] of lane.batches) if (!lane.long.has(id)) n += batch.length;
    return n;
  }

  /**
   * Whether a hot command sent now can start without waiting behind a long one: some hot
   * thread has no long command in flight (a hot batch is never queued behind one).
   */
  get hotReady(): boolean {
    for (let i = 0; i < this.#hotLanes; i++) if (this.#lanes[i]!.long.size === 0) return true;
    return false;
  }

  /** Batches sent and not yet answered, per thread (hot threads first). */
  get batchesPerThread(): number[] {
    return this.#lanes.map((lane) => lane.batches.size);
  }

  /** Runs one command on some thread. Rejects with {@link CommandFailedError} or {@link WorkerPoolClosedError}. */
  run(command: Command, options?: RunOptions): Promise<unknown> {
    if (this.#closed !== undefined) return Promise.reject(new WorkerPoolClosedError(this.#closed));
    const hot = options?.long !== true && isFrameCommand(command);
    return new Promise((resolve, reject) => {
      this.#queue.push({ command, hot, resolve, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        // Coalesce the commands issued in this tick into batches.
        queueMicrotask(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#flushScheduled = false;
    // A pool that is failing or closed sends nothing more (its queue is being rejected).
    if (this.#closed !== undefined) return;
    while (this.#queue.length > 0) {
      const hot = this.#queue[0]!.hot;
      const lane = this.#freeLane(hot);
      if (lane === undefined) return;
      // Hot commands (microseconds each) travel in batches; any other command (a key
      // generation, an unwrap: milliseconds, often a token-file write) goes alone, so two
      // of them issued together run on two threads rather than one after the other.
      let size = 1;
      if (hot) {
        const most = this.#maxBatch * this.#hotLanes * this.#batchesInFlight;
        while (size < most && size < this.#queue.length && this.#queue[size]!.hot) size++;
        // What is queued is spread evenly over the free batch slots: a thread's next batch
        // is then waiting when its current one ends, rather than sent only after the main
        // thread has resolved the results (16 callers in batches of 8 left each thread idle
        // for a round trip per batch).
        size = Math.min(this.#maxBatch, Math.ceil(size / this.#freeHotSlots()));
      }
      const batch = this.#queue.splice(0, size);
      const id = this.#nextBatchId++;
      lane.batches.set(id, batch);
      if (!hot) lane.long.add(id);
      const commands = batch.map((p) => p.command);
      try {
        if (commands.every(isFrameCommand)) {
          const frame = encodeRequest(commands);
          const request: BatchRequest = { id, frame };
          lane.worker.postMessage(request, [frame]);
        } else {
          const request: BatchRequest = { id, commands: commands.map((c) => compactForPost(c)) };
          lane.worker.postMessage(request);
        }
      } catch (error) {
        // A command that cannot be sent (e.g. an argument structured clone refuses) fails
        // as the caller's: the worker never saw it, the member is fine.
        lane.batches.delete(id);
        lane.long.delete(id);
        const message = `TypeError: ${error instanceof Error ? error.message : String(error)}`;
        for (const p of batch) p.reject(new CommandFailedError({ message }));
      }
    }
  }

  /**
   * The least busy thread with room for a batch: among the hot threads with no long
   * command in flight for a hot command (a hot batch behind a key generation would wait
   * for it); among all for another, the cold ones first on a tie.
   */
  #freeLane(hot: boolean): Lane | undefined {
    let lane: Lane | undefined;
    const count = hot ? this.#hotLanes : this.#lanes.length;
    for (let i = 0; i < count; i++) {
      const l = this.#lanes[i]!;
      if (hot && l.long.size > 0) continue;
      if (l.batches.size < this.#batchesInFlight && (lane === undefined || l.batches.size <= lane.batches.size)) lane = l;
    }
    return lane;
  }

  /** Batches that may still be sent now to the hot threads (at least 1 when a hot batch is formed). */
  #freeHotSlots(): number {
    let free = 0;
    for (let i = 0; i < this.#hotLanes; i++) {
      const lane = this.#lanes[i]!;
      if (lane.long.size === 0) free += this.#batchesInFlight - lane.batches.size;
    }
    return Math.max(1, free);
  }

  #onReply(lane: Lane, reply: BatchReply): void {
    const batch = lane.batches.get(reply.id);
    if (batch === undefined) return;
    lane.batches.delete(reply.id);
    lane.long.delete(reply.id);
    const fromFrame = reply.frame !== undefined;
    let outcomes: readonly CommandOutcome[] | undefined;
    try {
      outcomes = fromFrame ? decodeReply(reply.frame, reply.length, batch.length) : reply.outcomes;
    } catch (error) {
      // An answer that cannot be read still settles every command it stood for.
      const message = `worker answer unreadable: ${error instanceof Error ? error.message : String(error)}`;
      for (const p of batch) p.reject(new CommandFailedError({ message }));
    }
    for (let i = 0; outcomes !== undefined && i < batch.length; i++) {
      const pending = batch[i]!;
      const outcome = outcomes[i];
      if (outcome === undefined) pending.reject(new CommandFailedError({ message: 'worker gave no outcome' }));
      else if (outcome.ok) pending.resolve(fromFrame ? outcome.value : reviveBuffers(outcome.value));
      else pending.reject(new CommandFailedError(outcome.error));
    }
    if (this.#queue.length > 0) this.#flush();
  }

  #fail(reason: string): void {
    if (this.#closed !== undefined) return;
    // Closed first, so that settling the answers below sends nothing new (#flush).
    this.#closed = reason;
    // Answers sent before the failure still count: a command that ran is not run again elsewhere.
    this.poll();
    this.#rejectAll(reason);
    this.#onFailure?.(new WorkerPoolClosedError(reason));
    for (const lane of this.#lanes) {
      lane.replies.close();
      void lane.worker.terminate();
    }
  }

  #rejectAll(reason: string): void {
    this.#closed = reason;
    const error = new WorkerPoolClosedError(reason);
    for (const p of this.#queue.splice(0)) p.reject(error);
    for (const lane of this.#lanes) {
      for (const batch of lane.batches.values()) for (const p of batch) p.reject(error);
      lane.batches.clear();
      lane.long.clear();
    }
  }

  /** Stops the threads. Commands still queued or running are rejected. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed === undefined) this.#rejectAll('worker pool closed');
    await Promise.all(this.#lanes.map((lane) => lane.worker.terminate()));
    for (const lane of this.#lanes) lane.replies.close();
  }
}
