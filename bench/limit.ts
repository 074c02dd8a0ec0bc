/**
 * The machine's limit: one independent process per core (os.availableParallelism()), each
 * using pkcs11js directly with sync calls on its own SoftHSM token (its own configuration,
 * token directory and module copy), all running at the same time. The sum of their rates
 * is the most this machine does with these tokens: the reference for the virtual slot over
 * member host processes (`limit/<op>/hosts<n>`, added later against the same function).
 *
 * `limit/<op>/baseline`: value = the sum over all processes run at once, baseline = one such
 * process alone (same run, interleaved), so the ratio says how well the machine scales
 * (2.0 would be perfect on 2 cores). Extra fields: processes, perProcess (each process's
 * ops/s in the median repetition), p50/p99 (median p50 and worst p99 over the processes).
 *
 * Reuse (e.g. for hosts<n>): open the pool once, and measure it interleaved with the
 * variant under test, so that machine noise hits both alike:
 *
 *     const limit = await openMachineLimit({ log: ctx.log, trackDir: ctx.trackDir });
 *     try {
 *       const samples = await interleaved([
 *         { name: 'limit', measure: () => limit.measure('rsa2048-sign', timing) },
 *         { name: 'hosts2', measure: () => closedLoop(16, (lane) => ..., timing) },
 *       ], ctx.reps, ctx.signal);
 *       const base = summarize(samples.get('limit')!), value = summarize(samples.get('hosts2')!);
 *       results.push(entry('limit/rsa2048-sign/hosts2', 'ops/s', value.rate, base.rate, latencyFields(value, base)));
 *     } finally {
 *       await limit.close();
 *     }
 */
import os from 'node:os';
import { provisionKeys, standardKeys } from '../src/testbed/provision.js';
import { createTestbed, type Testbed } from '../src/testbed/softhsm-testbed.js';
import {
  entry,
  interleaved,
  latencyFields,
  median,
  spread,
  summarize,
  type BenchContext,
  type BenchFamily,
  type BenchResult,
  type LoopTiming,
  type Measurement,
  type ResultNote,
} from './harness.js';
import { epochNow, ForkedChild } from './fork-ipc.js';
import type { LimitReply, LimitRequest } from './limit-child.js';
import { KEYED_OPS, toPortable, type KeyedOpName } from './ops.js';
import { fmtRate } from './overhead.js';
import { benchScript } from './paths.js';

const CHILD = benchScript('limit-child');
/** Time between sending "run" and the common start: far more than an IPC round trip. */
export const START_DELAY_MS = 150;
/** How long a child may take to start, create its sessions and check its keys. */
const READY_TIMEOUT_MS = 60_000;

/** One measurement of the pool: the sum of the processes' rates. */
export interface LimitMeasurement extends Measurement {
  /** ops/s of each process that ran, in process order. */
  readonly perProcess: readonly number[];
}

/** A pool of independent processes, one per core, each on its own token. */
export interface MachineLimit {
  /** How many processes the pool has (the machine's available parallelism by default). */
  readonly processes: number;
  /**
   * Runs `op` in the first `count` processes at the same instant, each a sync loop of
   * warm-up then measured time, and adds their rates up. p50 is the median of the
   * processes' p50s, p99 the worst of their p99s.
   * @param count how many processes run (default all: the machine's limit; 1: one alone)
   */
  measure(op: KeyedOpName, timing: LoopTiming, count?: number): Promise<LimitMeasurement>;
  /** Stops the processes and removes their tokens. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@link openMachineLimit}. */
export interface MachineLimitOptions {
  /** Processes to start. @default os.availableParallelism() */
  readonly processes?: number;
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /** Registers the test bed's directory for removal on a hard exit (BenchContext.trackDir). */
  readonly trackDir?: (dir: string) => () => void;
}

/** One process of the pool (bench/limit-child.ts); it is killed if it has not gone a second after close. */
type Child = ForkedChild<LimitRequest, LimitReply>;

/**
 * Creates one SoftHSM token per process (independent layout), imports the standard keys
 * on each, starts the processes and waits until each has opened its session, logged in
 * and checked every workload once.
 *
 * @throws when a process cannot start or its check fails (everything is cleaned up)
 */
export async function openMachineLimit(options: MachineLimitOptions = {}): Promise<MachineLimit> {
  const processes = options.processes ?? os.availableParallelism();
  if (!Number.isInteger(processes) || processes < 1) throw new RangeError(`processes must be a positive integer, got ${processes}`);
  options.log?.(`limit: ${processes} processes, each on its own SoftHSM token with pkcs11js sync calls`);
  const bed: Testbed = await createTestbed({ count: processes, labelPrefix: 'limit' });
  const untrack = options.trackDir?.(bed.dir);
  const children: Child[] = [];
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await Promise.allSettled(children.map((c) => c.close()));
    await bed.dispose();
    untrack?.();
  };
  try {
    const keys = standardKeys('limit');
    provisionKeys(bed.tokens, keys);
    const portable = toPortable(keys);
    for (let i = 0; i < processes; i++) children.push(new ForkedChild(CHILD, `limit process ${i}`, { closeGraceMs: 1000 }));
    await Promise.all(
      children.map((c, i) => {
        const t = bed.tokens[i]!;
        return c.request({ type: 'init', token: { modulePath: t.modulePath, env: t.env, label: t.label, userPin: t.userPin }, keys: portable }, READY_TIMEOUT_MS);
      }),
    );
  } catch (error) {
    await close();
    throw error;
  }

  return {
    processes,
    async measure(op, timing, count = processes) {
      if (closed) throw new Error('the machine-limit pool is closed');
      const running = children.slice(0, Math.max(1, Math.min(count, processes)));
      const startAt = epochNow() + START_DELAY_MS;
      const limitMs = START_DELAY_MS + timing.warmupMs + timing.durationMs + 30_000;
      const replies = await Promise.all(
        running.map((c) => c.request({ type: 'run', op, startAt, warmupMs: timing.warmupMs, durationMs: timing.durationMs }, limitMs)),
      );
      const results = replies.map((r) => {
        if (r.type !== 'result') throw new Error(`limit: unexpected reply ${r.type}`);
        return r;
      });
      return {
        rate: results.reduce((a, r) => a + r.rate, 0),
        p50Ms: median(results.map((r) => r.p50Ms)),
        p99Ms: Math.max(...results.map((r) => r.p99Ms)),
        ops: results.reduce((a, r) => a + r.ops, 0),
        perProcess: results.map((r) => r.rate),
      };
    },
    close,
  };
}

const idOf = (op: KeyedOpName): string => `limit/${op}/baseline`;

/** The `limit/<op>/baseline` entries: every process at once against one process alone. */
export const limit: BenchFamily = {
  name: 'limit/',
  ids: () => KEYED_OPS.map(idOf),

  plannedSeconds(ctx) {
    const ops = KEYED_OPS.filter((op) => ctx.wants(idOf(op)));
    if (ops.length === 0) return 0;
    return 5 + ops.length * ctx.reps * 2 * ((ctx.warmupMs + ctx.durationMs + START_DELAY_MS) / 1000);
  },

  async run(ctx: BenchContext) {
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    const ops = KEYED_OPS.filter((op) => ctx.wants(idOf(op)));
    if (ops.length === 0) return { results, notes };
    const timing: LoopTiming = { durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, signal: ctx.signal };
    const perRun = (ctx.warmupMs + ctx.durationMs + START_DELAY_MS) / 1000;
    const pool = await openMachineLimit({ log: ctx.log, trackDir: ctx.trackDir });
    ctx.advance(5);
    try {
      for (const op of ops) {
        const samples = await interleaved(
          [
            { name: 'all', measure: () => pool.measure(op, timing).finally(() => ctx.advance(perRun)) },
            { name: 'one', measure: () => pool.measure(op, timing, 1).finally(() => ctx.advance(perRun)) },
          ],
          ctx.reps,
          ctx.signal,
          (rep, these) => ctx.log(`limit/${op} rep ${rep + 1}/${ctx.reps}: ${pool.processes} processes ${fmtRate(these.get('all')!.rate)} | one ${fmtRate(these.get('one')!.rate)}`),
        );
        const allSamples = samples.get('all')! as LimitMeasurement[];
        const all = summarize(allSamples);
        const one = summarize(samples.get('one')!);
        // The per-process split of the repetition whose sum is the median one.
        const middle = [...allSamples].sort((a, b) => a.rate - b.rate)[allSamples.length >> 1]!;
        results.push(
          entry(idOf(op), 'ops/s', all.rate, one.rate, {
            ...latencyFields(all, one),
            processes: pool.processes,
            perProcess: middle.perProcess.map((r) => Math.round(r)),
          }),
        );
        notes.push({
          id: idOf(op),
          note: `${pool.processes} processes at once vs one alone; spread ${(spread(allSamples.map((m) => m.rate)) * 100).toFixed(0)} %`,
        });
      }
    } finally {
      await pool.close();
    }
    return { results, notes };
  },
};
