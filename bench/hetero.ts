/**
 * hetero/<least-busy|peak-ewma>/p99: the two load-balancing strategies in a pool of 3
 * EMULATED member hosts where one is 5x slower (2 members of 4 engines x 20 ms and one of
 * 4 engines x 100 ms), under the same closed-loop load (12 callers, as many as the pool's
 * engines). value = p99 latency (ms) of one operation; baseline = least-busy's p99 in the
 * same run, so least-busy's ratio is 1 and a peak-EWMA ratio below 1 means peak-EWMA is
 * better. Throughput and p50 ride along as extra fields, with each member's share of the
 * operations.
 *
 * hetero/<strategy>/equal-load: the same strategies over 3 EQUAL members (4 engines x
 * 20 ms each), throughput in ops/s against least-busy's. Issue 5 makes the better strategy
 * the recommended default only if it keeps the reference's behaviour under equal load,
 * i.e. Luna's least-busy round-robin: the same throughput and latency and an even spread
 * (the margins are SCHEDULER_RULES in bench/results-page.ts). Each entry carries `shares`
 * (fraction of operations per member), `maxShareDeviation` (largest distance of a share
 * from 1/3) and `p99Ratio` (its p99 over least-busy's).
 *
 * How, and why:
 * - One group of 4 emulated member hosts (fast, fast, fast, slow) is started once; the
 *   slow pool is {fast, fast, slow} and the equal pool {fast, fast, fast}, the member left
 *   out set standby (out of load balancing, online). Starting 4 groups' hosts would cost
 *   ~8 s of a 5-minute quick run.
 * - The group's scheduler is a {@link SwitchingScheduler} over the two built-in strategies,
 *   constructed exactly as `scheduler: 'least-busy'` and `scheduler: 'peak-ewma'` build
 *   them (`new LeastBusyScheduler()`, `new PeakEwmaScheduler({ clock })` with the group's
 *   clock); it picks with the one under measurement, and feeds every command's latency to
 *   peak-EWMA all the time, so peak-EWMA starts each measurement knowing the members as
 *   it would have after running a while. All four variants are interleaved per repetition.
 * - Workload: C_GenerateRandom(32), whose real CPU cost is small against the service times.
 */
import { systemClock } from '../src/clock/clock.js';
import { HaGroup } from '../src/group/ha-group.js';
import type { ResolvedMemberConfig } from '../src/group/group-config.js';
import { LeastBusyScheduler } from '../src/routing/least-busy-scheduler.js';
import { PeakEwmaScheduler } from '../src/routing/peak-ewma-scheduler.js';
import type { Candidate, Scheduler } from '../src/routing/scheduler.js';
import type { VirtualSession } from '../src/slot/virtual-session.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import type { EmulatedCapacity } from '../src/host/host-transport.js';
import { describeCapacity, emulatedFactory } from './emulation.js';
import {
  closedLoop,
  entry,
  interleaved,
  roundMs,
  roundRate,
  roundRatio,
  spread,
  summarize,
  type BenchContext,
  type BenchFamily,
  type BenchResult,
  type LoopTiming,
  type Measurement,
  type ResultNote,
  type Variant,
} from './harness.js';
import { fmtRate } from './overhead.js';
import { SCHEDULER_RULES } from './results-page.js';

/** The strategies compared, by their configuration names. */
export const STRATEGIES = ['least-busy', 'peak-ewma'] as const;
/** A strategy's configuration name. */
export type StrategyName = (typeof STRATEGIES)[number];

/** EMULATION: a fast member, and the slow one (5x the service time). */
export const FAST: EmulatedCapacity = { engines: 4, serviceTimeMs: 20 };
export const SLOW: EmulatedCapacity = { engines: 4, serviceTimeMs: 100 };
/** Callers in flight: the engines of a pool of 3. */
const CALLERS = 12;
const RANDOM_BYTES = 32;
/** Member indices of each pool in the group of 4 (fast, fast, fast, slow). */
const POOLS = { slow: [0, 1, 3], equal: [0, 1, 2] } as const;
type PoolName = keyof typeof POOLS;
/** Seconds of set-up (4 tokens, 4 hosts), for the progress plan. */
const SETUP_SECONDS = 4;
const p99Id = (s: StrategyName): string => `hetero/${s}/p99`;
const equalId = (s: StrategyName): string => `hetero/${s}/equal-load`;

/**
 * A scheduler that picks with one of the two built-in strategies, switched between
 * measurements, and feeds peak-EWMA every latency whichever picks. For the benchmark
 * only: it lets one group (one set of member hosts) serve both strategies.
 */
export class SwitchingScheduler implements Scheduler {
  readonly leastBusy = new LeastBusyScheduler();
  readonly peakEwma: PeakEwmaScheduler;
  #current: Scheduler = this.leastBusy;

  /** @param clock the group's clock (peak-EWMA decays with it, as the built-in one does) */
  constructor(clock = systemClock) {
    this.peakEwma = new PeakEwmaScheduler({ clock });
  }

  /** The strategy picking now. */
  get name(): string {
    return this.#current.name;
  }

  /** Picks with `strategy` from now on. */
  use(strategy: StrategyName): void {
    this.#current = strategy === 'least-busy' ? this.leastBusy : this.peakEwma;
  }

  pick<C extends Candidate>(candidates: readonly C[]): C | undefined {
    return this.#current.pick(candidates);
  }

  observe(index: number, latencyMs: number, ok: boolean): void {
    this.peakEwma.observe(index, latencyMs, ok);
  }
}

/** Quick: 0.75 s after 0.25 s of warm-up (at most); full: the run's timing. */
export function heteroTiming(ctx: Pick<BenchContext, 'quick' | 'durationMs' | 'warmupMs' | 'signal'>): LoopTiming {
  return ctx.quick
    ? { durationMs: Math.min(ctx.durationMs, 750), warmupMs: Math.min(ctx.warmupMs, 250), signal: ctx.signal }
    : { durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, signal: ctx.signal };
}

/** Fraction of `counts` per member, and the largest distance of one from an even share. */
export function shares(counts: readonly number[]): { shares: number[]; maxDeviation: number } {
  const total = counts.reduce((a, c) => a + c, 0);
  const out = counts.map((c) => (total > 0 ? c / total : Number.NaN));
  const even = 1 / Math.max(1, counts.length);
  return { shares: out, maxDeviation: out.length === 0 ? Number.NaN : Math.max(...out.map((s) => Math.abs(s - even))) };
}

/** The scheduler comparison family (see the file comment). */
export const hetero: BenchFamily = {
  name: 'hetero/',
  ids: () => [...STRATEGIES.map(p99Id), ...STRATEGIES.map(equalId)],

  plannedSeconds(ctx) {
    if (!hetero.ids(ctx.options).some((id) => ctx.wants(id))) return 0;
    const t = heteroTiming(ctx);
    return SETUP_SECONDS + ctx.reps * 4 * ((t.warmupMs + t.durationMs) / 1000);
  },

  async run(ctx: BenchContext) {
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    // Each figure is against least-busy on the same pool: both strategies run on both pools.
    const pools = (['slow', 'equal'] as const).filter((p) => STRATEGIES.some((s) => ctx.wants(p === 'slow' ? p99Id(s) : equalId(s))));
    if (pools.length === 0) return { results, notes };
    const timing = heteroTiming(ctx);
    const perRun = (timing.warmupMs + timing.durationMs) / 1000;
    ctx.log(`hetero: EMULATION, ${CALLERS} callers over 3 members: slow pool 2 x ${describeCapacity(FAST)} + 1 x ${describeCapacity(SLOW)}; equal pool 3 x ${describeCapacity(FAST)}`);
    const bed = await createTestbed({ count: 4, labelPrefix: 'het' });
    const untrack = ctx.trackDir(bed.dir);
    const scheduler = new SwitchingScheduler(systemClock);
    let group: HaGroup | undefined;
    try {
      group = await HaGroup.open({
        members: bed.memberConfigs(),
        transportFactory: emulatedFactory((m: ResolvedMemberConfig) => (m.index === 3 ? SLOW : FAST)),
        threadsPerMember: 1,
        scheduler,
        clock: systemClock,
        recovery: { maxAttempts: 0 },
      });
      const g = group;
      const down = g.status().members.filter((m) => m.state.kind !== 'active');
      if (down.length > 0) throw new Error(`hetero: members not serving after open: ${down.map((m) => `${m.name} (${m.state.kind})`).join(', ')}`);
      const failures: string[] = [];
      g.on('memberFailed', (e) => failures.push(`${e.member}: ${e.reason}`));
      const sessions: VirtualSession[] = Array.from({ length: CALLERS }, () => g.slot.openSession());
      ctx.advance(SETUP_SECONDS);

      /** Operations served per member index during each variant, summed over repetitions. */
      const served = new Map<string, number[]>();
      const variants: Variant[] = pools.flatMap((pool) =>
        STRATEGIES.map(
          (strategy): Variant => ({
            name: `${strategy} ${pool}`,
            measure: async () => {
              const members = POOLS[pool];
              g.status().members.forEach((m, i) => g.setStandby(m.name, !(members as readonly number[]).includes(i)));
              scheduler.use(strategy);
              const before = g.status().members.map((m) => m.served);
              const m = await closedLoop(
                CALLERS,
                async (lane) => {
                  const out = await sessions[lane]!.generateRandom(RANDOM_BYTES);
                  if (out.length !== RANDOM_BYTES) throw new Error(`hetero: generateRandom gave ${out.length} bytes`);
                },
                timing,
              );
              const after = g.status().members.map((x) => x.served);
              const sum = served.get(`${strategy} ${pool}`) ?? members.map(() => 0);
              members.forEach((index, j) => (sum[j]! += after[index]! - before[index]!));
              served.set(`${strategy} ${pool}`, sum);
              ctx.advance(perRun);
              return m;
            },
          }),
        ),
      );
      const samples = await interleaved(variants, ctx.reps, ctx.signal, (rep, these) =>
        ctx.log(`hetero rep ${rep + 1}/${ctx.reps}: ${[...these].map(([name, m]) => `${name} p99 ${m.p99Ms.toFixed(1)} ms ${fmtRate(m.rate)}/s`).join(' | ')}`),
      );

      const failed = failures.length > 0 ? `; MEMBER FAILURES during the run: ${failures.join('; ')}` : '';
      for (const pool of pools) {
        const of = (s: StrategyName): { m: Measurement; xs: Measurement[]; share: ReturnType<typeof shares> } => {
          const xs = samples.get(`${s} ${pool}`)!;
          return { m: summarize(xs), xs, share: shares(served.get(`${s} ${pool}`)!) };
        };
        const ref = of('least-busy');
        for (const s of STRATEGIES) {
          const { m, xs, share } = of(s);
          const common = {
            pool: pool === 'slow' ? '2 x 4 engines x 20 ms + 1 x 4 engines x 100 ms' : '3 x 4 engines x 20 ms',
            emulation: true,
            callers: CALLERS,
            shares: share.shares.map((x) => roundRatio(x)),
            maxShareDeviation: roundRatio(share.maxDeviation),
          };
          const pct = (v: readonly Measurement[], f: (x: Measurement) => number): string => `${(spread(v.map(f)) * 100).toFixed(0)} %`;
          if (pool === 'slow') {
            const id = p99Id(s);
            if (!ctx.wants(id)) continue;
            results.push(entry(id, 'ms', m.p99Ms, ref.m.p99Ms, { ...common, rate: roundRate(m.rate), baselineRate: roundRate(ref.m.rate), p50Ms: roundMs(m.p50Ms) }));
            notes.push({
              id,
              note:
                `EMULATION; ${fmtRate(m.rate)} ops/s (least-busy ${fmtRate(ref.m.rate)}), p50 ${m.p50Ms.toFixed(1)} ms; shares fast/fast/slow ` +
                `${share.shares.map((x) => x.toFixed(2)).join('/')}; spread of p99 ${pct(xs, (x) => x.p99Ms)}${failed}`,
              ...(s === 'peak-ewma' ? { target: `< ${SCHEDULER_RULES.clearlyBetter} (clearly better than least-busy)`, met: m.p99Ms / ref.m.p99Ms < SCHEDULER_RULES.clearlyBetter } : {}),
            });
          } else {
            const id = equalId(s);
            if (!ctx.wants(id)) continue;
            const p99Ratio = m.p99Ms / ref.m.p99Ms;
            const keeps =
              m.rate / ref.m.rate >= SCHEDULER_RULES.equalMinRatio && p99Ratio <= SCHEDULER_RULES.equalMaxP99Ratio && share.maxDeviation <= SCHEDULER_RULES.maxShareDeviation;
            results.push(
              entry(id, 'ops/s', m.rate, ref.m.rate, { ...common, p50Ms: roundMs(m.p50Ms), p99Ms: roundMs(m.p99Ms), baselineP99Ms: roundMs(ref.m.p99Ms), p99Ratio: roundRatio(p99Ratio) }),
            );
            notes.push({
              id,
              note:
                `EMULATION; p99 ${m.p99Ms.toFixed(1)} ms (least-busy ${ref.m.p99Ms.toFixed(1)} ms); shares ${share.shares.map((x) => x.toFixed(3)).join('/')}; ` +
                `spread of rate ${pct(xs, (x) => x.rate)}${failed}`,
              ...(s === 'peak-ewma'
                ? {
                    target: `keeps least-busy's behaviour: >= ${SCHEDULER_RULES.equalMinRatio}, p99 <= ${SCHEDULER_RULES.equalMaxP99Ratio} x, shares within 1/3 ± ${SCHEDULER_RULES.maxShareDeviation}`,
                    met: keeps,
                  }
                : {}),
            });
          }
          ctx.log(`hetero: ${pool} pool, ${s}: p99 ${m.p99Ms.toFixed(1)} ms, p50 ${m.p50Ms.toFixed(1)} ms, ${fmtRate(m.rate)}/s, shares ${share.shares.map((x) => x.toFixed(2)).join('/')}`);
        }
      }
    } finally {
      await group?.close();
      await bed.dispose();
      untrack();
    }
    return { results, notes };
  },
};
