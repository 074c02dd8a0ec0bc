/**
 * A member's module loaded in this process: pkcs11js on worker threads that make
 * synchronous calls (see `worker-pool.ts` for why), and, under `calls: 'inline'`, short
 * cryptographic calls made right on the calling thread in slices of the event loop (see
 * `inline-slicer.ts` for why). A crash in the module still takes the whole process down,
 * and a hung inline call the event loop with it; only a member host process isolates that.
 */
import { isMultipartCommand, type Command, type CommandName, type CommandResult } from '../pkcs11/commands.js';
import { acquireModule, releaseModule, type LoadedModule } from '../pkcs11/module-registry.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { MemberUnreachableError } from '../errors/ha-error.js';
import type { TokenInfo, Transport } from './transport.js';
import { availableParallelism } from 'node:os';
import { WorkerPool } from './worker-pool.js';
import { runCommand, scratchOutput, toWireError } from '../pkcs11/run-command.js';
import { CommandFailedError, NOT_NOW } from './transport.js';
import { isFrameCommand, type FrameCommand } from './frame-codec.js';
import { threadSlicer, type InlineSlicer } from './inline-slicer.js';
import { isShort } from '../pkcs11/short-commands.js';
import { generateAsync, isAsyncGeneration, type AsyncGeneration } from './async-generation.js';

/**
 * Where an in-process member makes its short cryptographic calls (encrypt, decrypt, sign,
 * verify, digest): `'inline'` on the calling thread in slices of the event loop, with
 * some handed to worker threads when several callers wait; `'threads'` always on the
 * worker threads. Every other call runs on the worker threads either way.
 */
export type InProcessCalls = 'inline' | 'threads';

/** Which token of a module a member is: by label or by serial number. */
export type TokenSelector = { readonly label: string } | { readonly serial: string };

/** Options of an {@link InProcessTransport}. */
export interface InProcessTransportOptions {
  /** Member name, for errors. */
  readonly member: string;
  /** Path of the PKCS#11 module file. */
  readonly modulePath: string;
  /** Environment the module reads at C_Initialize (e.g. SOFTHSM2_CONF). */
  readonly moduleEnv: Readonly<Record<string, string>>;
  readonly token: TokenSelector;
  /** Worker threads for this member. @default 2 */
  readonly threads: number;
  /** Where in the config this member is, for errors. */
  readonly configPath: string;
  /** Where short cryptographic calls run. @default 'threads' */
  readonly calls?: InProcessCalls;
  /** @internal The slicer inline calls share the event loop through (tests hand in one on fake time). @default this thread's */
  readonly slicer?: InlineSlicer;
}

/**
 * Hot commands in the worker threads' hands, per hot thread, before a waiting caller's
 * call runs inline instead: enough that a thread always has its next batch waiting while
 * the calling thread works on the rest.
 */
const HANDED_OFF_PER_THREAD = 12;

/**
 * A kind of call (operation, mechanism and key) that took longer than this (ms) inline
 * {@link LONG_STRIKES} times in a row is long: the next ones go to the worker threads (an
 * RSA-4096 signature would hold the event loop for several ms). In a row, because a first
 * call or a descheduled thread can take that long once. After {@link LONG_RETRY_MS} the
 * kind is tried inline again, and one more slow call makes it long again: a machine that
 * was only busy for a while does not send a fast kind to the threads for good.
 *
 * Slow by the wall clock makes a kind suspect only; where the slicer reads CPU time
 * (the real one does), a strike needs the suspect's next calls to take that long in CPU
 * time too. On a loaded machine (load 12 on 2 cores) a 0.1 ms EC key generation took
 * 2-14 ms of wall time, descheduled, often enough to strike out three times in a row:
 * every generation then went to the threads for 10 s. (The CPU clock is the process's:
 * busy worker threads can still make a descheduled call look long, but rarely thrice.)
 */
const LONG_INLINE_CALL_MS = 2;
const LONG_STRIKES = 3;
const LONG_RETRY_MS = 10_000;

/** Short key generations on libuv's thread pool at once, at most (see #short). */
const MAX_ASYNC_GENERATIONS = 4;

/** Kinds of call tracked, at most (the map is cleared when full). */
const MAX_TRACKED_KINDS = 1024;

/** @internal How many calls ran where. */
export interface InProcessCallCounts {
  /** Made on the calling thread. */
  readonly inline: number;
  /** Made on the worker threads. */
  readonly threads: number;
}

const trim = (s: string): string => s.replace(/[\s\0]+$/, '');

/** Runs a member's commands in this process. */
export class InProcessTransport implements Transport {
  readonly kind = 'in-process';
  readonly #options: InProcessTransportOptions;
  #module: LoadedModule | undefined;
  #pool: WorkerPool | undefined;
  #listeners: ((error: Error) => void)[] = [];
  #closed = false;
  readonly #inline: boolean;
  readonly #slicer: InlineSlicer;
  /** Kinds of call seen to take longer than LONG_INLINE_CALL_MS inline: strikes in a row. */
  readonly #strikes = new Map<string, number>();
  /** Kinds of call that are long, until when (slicer time, ms). */
  readonly #longUntil = new Map<string, number>();
  #waitingInline = 0;
  /** Generations under way on libuv's pool (settled either way): close() waits for them before the module can be finalized. */
  readonly #asyncCalls = new Set<Promise<void>>();
  /** Key generations waiting for a place on libuv's pool, in order. */
  readonly #generationQueue: { command: AsyncGeneration; resolve: (result: unknown) => void; reject: (error: Error) => void }[] = [];
  /** In a {@link whenNow} callback: the slicer gave it this slice. */
  #granted = false;
  #inlineCalls = 0;
  #threadCalls = 0;

  constructor(options: InProcessTransportOptions) {
    this.#options = options;
    this.#inline = options.calls === 'inline';
    this.#slicer = options.slicer ?? threadSlicer;
  }

  /** @internal How many calls ran inline and how many on the worker threads, since this transport was made. */
  get calls(): InProcessCallCounts {
    return { inline: this.#inlineCalls, threads: this.#threadCalls };
  }

  async connect(): Promise<TokenInfo> {
    const o = this.#options;
    if (this.#closed) throw new MemberUnreachableError(o.member, 'transport closed');
    const module = acquireModule(o.modulePath, o.moduleEnv, `${o.configPath}.module`);
    this.#module = module;
    try {
      const info = findToken(module, o.token, o.member);
      // Inline, the calling thread is busy with calls too: one hot thread per spare core.
      const hotThreads = this.#inline ? Math.max(1, availableParallelism() - 1) : o.threads;
      const pool = await WorkerPool.start(module.path, { threads: o.threads, hotThreads }, (error) => {
        if (this.#closed) return;
        for (const l of this.#listeners.splice(0)) l(new MemberUnreachableError(o.member, error.message, { cause: error }));
      });
      if (this.#closed) {
        // Closed while the threads started: close() found no pool, so stop them here.
        await pool.close();
        if (this.#module) releaseModule(this.#module);
        this.#module = undefined;
        throw new MemberUnreachableError(o.member, 'transport closed');
      }
      this.#pool = pool;
      return info;
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  get pending(): number {
    return (this.#pool?.pending ?? 0) + this.#waitingInline + this.#asyncCalls.size;
  }

  execute<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    const pool = this.#pool;
    if (pool === undefined) return Promise.reject(new MemberUnreachableError(this.#options.member, 'not connected', { unsent: true }));
    if (this.#inline && isFrameCommand(command)) {
      if (!this.#isLong(command)) return this.#hot(pool, command) as Promise<CommandResult<N>>;
      // A long kind runs on every thread, one call each: on the hot ones only, in batches,
      // callers of an RSA-4096 key would wait in line while the cold threads sit idle.
      this.#threadCalls++;
      return pool.run(command, { long: true }) as Promise<CommandResult<N>>;
    }
    // Key management its caller marked short (session objects: src/pkcs11/short-commands.ts):
    // inline, or a key generation on libuv's pool when callers queue up (#short). Steps of
    // multi-part operations inline only: a thread's wake-up per 64 KiB part cost more than
    // it saved, and one operation's steps run one at a time anyway (its session is leased).
    if (this.#inline && (isShort(command) || isMultipartCommand(command)) && !this.#isLong(command)) {
      if (isShort(command)) return this.#short(command) as Promise<CommandResult<N>>;
      return this.#inlineSoon(command) as Promise<CommandResult<N>>;
    }
    this.#threadCalls++;
    return pool.run(command) as Promise<CommandResult<N>>;
  }

  /**
   * Calls `callback` in the next slice with room, in line with the calls waiting for one;
   * a {@link runNow} made during the callback has that slice (see `Transport.whenNow`).
   *
   * @internal
   */
  whenNow(callback: () => void): void {
    this.#waitingInline++;
    this.#slicer.defer(() => {
      this.#waitingInline--;
      this.#granted = true;
      try {
        callback();
      } finally {
        this.#granted = false;
      }
    });
  }

  /**
   * A step of a multi-part operation made right now on this thread, as `execute` would
   * make it (inline, in the current slice); {@link NOT_NOW} when `execute` would defer it
   * or send it to the threads.
   *
   * @internal
   */
  runNow<N extends CommandName>(command: Extract<Command, { op: N }>, output?: Buffer): CommandResult<N> | typeof NOT_NOW {
    if (!this.#inline || this.#pool === undefined || !isMultipartCommand(command) || this.#isLong(command) || !(this.#granted || this.#slicer.mayRun())) return NOT_NOW;
    const cpu = this.#cpuIfSuspect(command);
    const start = this.#slicer.now();
    try {
      return this.runHere(command, output);
    } finally {
      this.#inlineCalls++;
      this.#timed(command, this.#slicer.now() - start, cpu);
    }
  }

  /**
   * A command marked short: inline now or in the next slice, never to the worker threads
   * (structured clone of a generation's templates cost more than the generation). But a
   * key generation while other calls queue up (callers waiting for a slice, or another
   * generation under way) goes to libuv's thread pool through pkcs11js's async call, at
   * most {@link MAX_ASYNC_GENERATIONS} at once, the next ones waiting for a free place:
   * this thread then runs only the callers' own work (the group's) while keys are made
   * beside it. All inline, one core did both (EC key pairs at 16 callers: 0.35 -> 0.53 of
   * pkcs11js direct on a loaded machine); running the generations past the limit inline
   * as well left this thread busy with them and the pool's threads waiting for its answers
   * (0.55 -> 0.69, same run). A lone caller stays inline: an async call costs it a thread
   * hop. One that proved long (see #timed) goes to the threads like any other.
   */
  #short(command: Command): Promise<unknown> {
    if (this.#module === undefined || !isAsyncGeneration(command) || !(this.#asyncCalls.size > 0 || this.#slicer.demand >= 2 || this.#slicer.waiting > 0)) {
      return this.#inlineSoon(command);
    }
    if (this.#asyncCalls.size >= MAX_ASYNC_GENERATIONS) {
      this.#waitingInline++;
      return new Promise((resolve, reject) => this.#generationQueue.push({ command, resolve, reject }));
    }
    return this.#generate(this.#module, command);
  }

  /** A generation on libuv's pool; when it ends, the next waiting one starts. */
  #generate(module: LoadedModule, command: AsyncGeneration): Promise<unknown> {
    this.#threadCalls++;
    const call = generateAsync(module.pkcs11, command);
    const settled: Promise<void> = call.then(
      () => this.#generated(module, settled),
      () => this.#generated(module, settled),
    );
    this.#asyncCalls.add(settled);
    return call;
  }

  #generated(module: LoadedModule, settled: Promise<void>): void {
    this.#asyncCalls.delete(settled);
    const next = this.#generationQueue.shift();
    if (next === undefined) return;
    this.#waitingInline--;
    // Closing rejects the waiting ones first (see close), so the module is still loaded here.
    next.resolve(this.#generate(module, next.command));
  }

  /** A command made inline now, or in the next slice when this one is spent. */
  #inlineSoon(command: Command): Promise<unknown> {
    if (this.#slicer.mayRun()) return this.#inlineNow(command);
    this.#waitingInline++;
    return new Promise((resolve) => {
      this.#slicer.defer(() => {
        this.#waitingInline--;
        resolve(this.#pool === undefined ? Promise.reject(new MemberUnreachableError(this.#options.member, 'transport closed', { unsent: true })) : this.#inlineNow(command));
      });
    });
  }

  /** A hot command under `calls: 'inline'`: to the threads when callers queue up, else inline now or in the next slice. */
  #hot(pool: WorkerPool, command: FrameCommand): Promise<unknown> {
    pool.poll();
    if (this.#handOff(pool)) return this.#toThreads(pool, command);
    if (!this.#slicer.mayRun()) {
      this.#waitingInline++;
      return new Promise((resolve) => {
        this.#slicer.defer(() => {
          this.#waitingInline--;
          resolve(this.#resume(command));
        });
      });
    }
    return this.#inlineNow(command);
  }

  /** A hot command whose slice has come: the pool may have room by now, else it runs inline. */
  #resume(command: FrameCommand): Promise<unknown> {
    const pool = this.#pool;
    if (pool === undefined) return Promise.reject(new MemberUnreachableError(this.#options.member, 'transport closed', { unsent: true }));
    pool.poll();
    return this.#handOff(pool) ? this.#toThreads(pool, command) : this.#inlineNow(command);
  }

  #toThreads(pool: WorkerPool, command: FrameCommand): Promise<unknown> {
    this.#threadCalls++;
    return pool.run(command);
  }

  /**
   * Whether a hot command goes to the worker threads: when several callers are at work
   * (waiting for a slice, or with hot calls on the threads already), a hot thread is free
   * of long commands (a key generation would hold the call up for seconds), and the hot
   * threads have room. One caller in a loop stays inline: a hand-off would cost it a
   * thread wake-up.
   */
  #handOff(pool: WorkerPool): boolean {
    const hot = pool.hotPending;
    return this.#slicer.demand + hot >= 2 && hot < HANDED_OFF_PER_THREAD * pool.hotThreads && pool.hotReady;
  }

  /** Runs a hot command here, timed; a byte result is copied out of the thread's scratch output. */
  #inlineNow(command: FrameCommand | Command): Promise<unknown> {
    const output = isFrameCommand(command) ? scratchOutput(command) : undefined;
    const cpu = this.#cpuIfSuspect(command);
    const start = this.#slicer.now();
    try {
      const result: unknown = this.runHere(command as Extract<Command, { op: CommandName }>, output);
      return Promise.resolve(output !== undefined && Buffer.isBuffer(result) ? Buffer.from(result) : result);
    } catch (error) {
      return Promise.reject(error as Error);
    } finally {
      this.#inlineCalls++;
      this.#timed(command, this.#slicer.now() - start, cpu);
    }
  }

  /** The CPU clock's reading before a call of a suspect kind (slow by the wall clock lately), when the slicer reads one. */
  #cpuIfSuspect(command: FrameCommand | Command): number | undefined {
    if (this.#strikes.size === 0 || !this.#slicer.readsCpu || !this.#strikes.has(kindOf(command))) return undefined;
    return this.#slicer.cpuNow();
  }

  #isLong(command: FrameCommand | Command): boolean {
    if (this.#longUntil.size === 0) return false;
    const kind = kindOf(command);
    const until = this.#longUntil.get(kind);
    if (until === undefined) return false;
    if (this.#slicer.now() < until) return true;
    // Time to try it inline again; one slow call makes it long again.
    this.#longUntil.delete(kind);
    this.#strikes.set(kind, LONG_STRIKES - 1);
    return false;
  }

  /**
   * Counts a slow inline call against its kind; a fast one clears its kind's strikes.
   * @param cpuStart the CPU clock before the call, read for a suspect kind only (see LONG_INLINE_CALL_MS)
   */
  #timed(command: FrameCommand | Command, ms: number, cpuStart: number | undefined): void {
    if (ms <= LONG_INLINE_CALL_MS) {
      if (this.#strikes.size > 0) this.#strikes.delete(kindOf(command));
      return;
    }
    const kind = kindOf(command);
    const before = this.#strikes.get(kind);
    // Slow by the wall clock: a strike only when the CPU clock agrees (or none is read).
    let strikes = before ?? 0;
    if (!this.#slicer.readsCpu) strikes++;
    else if (cpuStart !== undefined && this.#slicer.cpuNow() - cpuStart > LONG_INLINE_CALL_MS) strikes++;
    if (strikes < LONG_STRIKES) {
      if (before === undefined && this.#strikes.size >= MAX_TRACKED_KINDS) this.#strikes.clear();
      this.#strikes.set(kind, strikes);
      return;
    }
    this.#strikes.delete(kind);
    if (this.#longUntil.size >= MAX_TRACKED_KINDS) this.#longUntil.clear();
    this.#longUntil.set(kind, this.#slicer.now() + LONG_RETRY_MS);
  }

  /**
   * @internal For the member host, which answers short calls on its main thread.
   * Runs a command on the calling thread with a synchronous call (the caller's thread
   * blocks for its whole length). Throws {@link CommandFailedError} when the module
   * answers with an error.
   * @param output where a byte result is written (the result is a view of it); room for
   *   the input's length plus 1 KiB. @default a new buffer
   */
  runHere<N extends CommandName>(command: Extract<Command, { op: N }>, output?: Buffer): CommandResult<N> {
    const module = this.#module;
    if (module === undefined || this.#pool === undefined) throw new MemberUnreachableError(this.#options.member, 'not connected', { unsent: true });
    try {
      return runCommand(module.pkcs11, command, output);
    } catch (error) {
      throw new CommandFailedError(toWireError(error));
    }
  }

  onDisconnect(listener: (error: Error) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pool = this.#pool;
    this.#pool = undefined;
    // Threads, and calls on libuv's pool, must be gone before the module is finalized under them.
    for (const waiting of this.#generationQueue.splice(0)) {
      this.#waitingInline--;
      waiting.reject(new MemberUnreachableError(this.#options.member, 'transport closed', { unsent: true }));
    }
    await pool?.close();
    await Promise.all(this.#asyncCalls);
    if (this.#module) releaseModule(this.#module);
    this.#module = undefined;
  }
}

/** What makes a call's length: the operation, the mechanism and the key. */
function kindOf(command: FrameCommand | Command): string {
  return `${command.op}:${'mechanism' in command ? command.mechanism.mechanism : ''}:${'key' in command ? command.key.toString('hex') : ''}`;
}

function findToken(module: LoadedModule, selector: TokenSelector, member: string): TokenInfo {
  const p = module.pkcs11;
  const seen: string[] = [];
  for (const slot of p.C_GetSlotList(true)) {
    const t = p.C_GetTokenInfo(slot);
    // SoftHSM always lists one empty, uninitialized slot as present.
    if ((t.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) continue;
    const info: TokenInfo = {
      slot,
      label: trim(t.label),
      serial: trim(t.serialNumber),
      manufacturer: trim(t.manufacturerID),
      model: trim(t.model),
    };
    seen.push(`${info.label} (${info.serial})`);
    if ('label' in selector ? info.label === selector.label : info.serial === selector.serial) return info;
  }
  const wanted = 'label' in selector ? `label ${JSON.stringify(selector.label)}` : `serial ${JSON.stringify(selector.serial)}`;
  throw new MemberUnreachableError(member, `no initialized token with ${wanted}; the module shows: ${seen.join(', ') || 'none'}`);
}
