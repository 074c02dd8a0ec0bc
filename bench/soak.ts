/**
 * soak/rss-growth: the resident set size of this process while the virtual slot runs a
 * steady load, as percent growth from the first to the last quarter of the run (mean RSS
 * of each quarter). A leak of anything per operation (catalog entries, session handles,
 * promises, buffers held by the transport) shows as growth; the V8 heap settling does not,
 * once the warm-up (not sampled) is over.
 *
 * Load: a group of two in-process members (so routing, both transports and the catalog's
 * holder maps are exercised), 16 closed-loop callers cycling through HMAC-SHA256 1 KiB,
 * AES-256-GCM 1 KiB and ECDSA P-256 signatures, and every 500th operation of a caller an EC
 * P-256 session key pair generated and destroyed (objects in and out of the catalog).
 *
 * Full run: at least 2 minutes AND at least a million operations (capped at 10 minutes).
 * Quick run: 20 s, labelled quick in the entry and in RESULTS.md; the < 5 % target is
 * judged only on a full run.
 *
 * Entry: value = growth in percent, baseline = 100 (the first quarter's RSS as 100 %), so
 * ratio = value / baseline = the growth as a fraction. Extra fields: firstQuarterMiB,
 * lastQuarterMiB, durationS, operations, quickSoak, and rssMiB (the RSS over the run, at
 * most 60 points, evenly spaced over durationS) for the chart.
 */
import { performance } from 'node:perf_hooks';
import { HaGroup } from '../src/group/ha-group.js';
import type { ObjectHandle } from '../src/catalog/catalog.js';
import type { VirtualSession } from '../src/slot/virtual-session.js';
import { provisionKeys, standardKeys } from '../src/testbed/provision.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { checkAborted, type BenchContext, type BenchFamily, type BenchResult, type ResultNote } from './harness.js';
import { keygenSpec, opSpecs, type KeyedOpSpec, type OpName } from './ops.js';

const ID = 'soak/rss-growth';
const LANES = 16;
const KEYGEN_EVERY = 500;
const SAMPLE_EVERY_MS = 250;
const MIB = 1024 * 1024;

/** Durations of the soak (ms) and the operations it must reach. */
export function soakPlan(quick: boolean): { warmupMs: number; minMs: number; minOps: number; maxMs: number } {
  return quick ? { warmupMs: 3_000, minMs: 20_000, minOps: 0, maxMs: 20_000 } : { warmupMs: 10_000, minMs: 120_000, minOps: 1_000_000, maxMs: 600_000 };
}

/** One RSS reading: ms since the start of the sampled run, and bytes. */
export interface RssSample {
  readonly t: number;
  readonly rss: number;
}

/**
 * Percent growth of the mean RSS from the first quarter of the run (by time) to the last
 * quarter. NaN when a quarter holds no sample.
 */
export function rssGrowth(samples: readonly RssSample[], durationMs: number): { growthPct: number; firstMean: number; lastMean: number } {
  const mean = (xs: readonly RssSample[]): number => (xs.length === 0 ? Number.NaN : xs.reduce((a, s) => a + s.rss, 0) / xs.length);
  const firstMean = mean(samples.filter((s) => s.t < durationMs / 4));
  const lastMean = mean(samples.filter((s) => s.t >= (3 * durationMs) / 4));
  return { growthPct: (lastMean / firstMean - 1) * 100, firstMean, lastMean };
}

/** At most `points` values: the mean RSS (MiB) of each of `points` equal spans of the run. */
export function downsample(samples: readonly RssSample[], durationMs: number, points: number): number[] {
  const sums = new Array<number>(points).fill(0);
  const counts = new Array<number>(points).fill(0);
  for (const s of samples) {
    const i = Math.min(points - 1, Math.max(0, Math.floor((s.t / durationMs) * points)));
    sums[i]! += s.rss;
    counts[i]!++;
  }
  const out: number[] = [];
  for (let i = 0; i < points; i++) if (counts[i]! > 0) out.push(Math.round((sums[i]! / counts[i]! / MIB) * 10) / 10);
  return out;
}

export const soak: BenchFamily = {
  name: 'soak/',
  ids: () => [ID],
  plannedSeconds(ctx) {
    if (!ctx.wants(ID)) return 0;
    const plan = soakPlan(ctx.quick);
    return 4 + (plan.warmupMs + plan.minMs) / 1000;
  },

  async run(ctx: BenchContext) {
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    if (!ctx.wants(ID)) return { results, notes };
    const plan = soakPlan(ctx.quick);
    ctx.log(`soak: ${ctx.quick ? 'QUICK soak' : 'soak'} of ${plan.minMs / 1000} s${plan.minOps > 0 ? ` and at least ${plan.minOps.toLocaleString('en-US')} operations` : ''} after ${plan.warmupMs / 1000} s of warm-up, 2 members, ${LANES} callers`);
    const bed = await createTestbed({ count: 2, labelPrefix: 'soak' });
    const untrack = ctx.trackDir(bed.dir);
    let group: HaGroup | undefined;
    try {
      const keys = standardKeys('soak');
      provisionKeys(bed.tokens, keys);
      const specs = opSpecs(keys);
      const mix = (['hmac-sha256-1k', 'aes-gcm-1k', 'ecdsa-p256-sign'] as const satisfies readonly OpName[]).map((n) => specs.get(n) as KeyedOpSpec);
      const gen = keygenSpec();
      // Key pairs made through a group of two are replicated under the domain key.
      await HaGroup.initDomain({ members: bed.memberConfigs() });
      group = await HaGroup.open({ members: bed.memberConfigs() });
      const sessions: VirtualSession[] = Array.from({ length: LANES }, () => group!.slot.openSession());
      await sessions[0]!.login(bed.tokens[0]!.userPin);
      const handles = new Map<string, ObjectHandle>();
      for (const spec of mix) {
        const found = await sessions[0]!.findObjects({ label: spec.keyLabel, class: spec.keyClass });
        if (found.length !== 1) throw new Error(`soak: ${found.length} objects labelled ${spec.keyLabel}`);
        handles.set(spec.name, found[0]!);
      }
      ctx.advance(4);

      let ops = 0;
      let errors = 0;
      const samples: RssSample[] = [];
      /** One phase of all lanes, until `minMs` and `minOps` are both reached or `maxMs` passed; samples RSS when `sampled`. */
      const phase = async (minMs: number, minOps: number, maxMs: number, sampled: boolean): Promise<number> => {
        const start = performance.now();
        const opsAtStart = ops;
        let nextSample = start;
        let nextAdvance = start + 1000;
        let done = false;
        const lane = async (i: number): Promise<void> => {
          const session = sessions[i]!;
          let n = 0;
          while (!done && !ctx.signal.aborted) {
            n++;
            try {
              if (n % KEYGEN_EVERY === 0) {
                const pair = await session.generateKeyPair(gen.groupMechanism, gen.publicTemplate, gen.privateTemplate);
                await session.destroyObject(pair.privateKey);
                await session.destroyObject(pair.publicKey);
              } else {
                const spec = mix[(n + i) % mix.length]!;
                const key = handles.get(spec.name)!;
                const params = spec.params();
                const out = spec.kind === 'encrypt' ? await session.encrypt(spec.groupMechanism(params), key, spec.data) : await session.sign(spec.groupMechanism(params), key, spec.data);
                // Check a few outputs on the way: a broken path cannot pass as a quiet one.
                if (n % 10_007 === 1) spec.check(out, params);
              }
              ops++;
            } catch (error) {
              errors++;
              if (errors === 1) ctx.log(`soak: an operation failed: ${(error as Error).message}`);
              if (errors > 100) throw error;
            }
            const now = performance.now();
            if (sampled && now >= nextSample) {
              samples.push({ t: now - start, rss: process.memoryUsage.rss() });
              nextSample += SAMPLE_EVERY_MS;
            }
            if (now >= nextAdvance) {
              ctx.advance(1);
              nextAdvance += 1000;
            }
            const elapsed = now - start;
            if ((elapsed >= minMs && ops - opsAtStart >= minOps) || elapsed >= maxMs) done = true;
          }
        };
        await Promise.all(Array.from({ length: LANES }, (_, i) => lane(i)));
        checkAborted(ctx.signal);
        return performance.now() - start;
      };

      await phase(plan.warmupMs, 0, plan.warmupMs, false);
      const opsBefore = ops;
      const durationMs = await phase(plan.minMs, plan.minOps, plan.maxMs, true);
      const operations = ops - opsBefore;
      const { growthPct, firstMean, lastMean } = rssGrowth(samples, durationMs);
      results.push({
        id: ID,
        unit: '%',
        value: Math.round(growthPct * 100) / 100,
        baseline: 100,
        ratio: Math.round(growthPct * 10) / 1000,
        firstQuarterMiB: Math.round((firstMean / MIB) * 10) / 10,
        lastQuarterMiB: Math.round((lastMean / MIB) * 10) / 10,
        durationS: Math.round(durationMs / 100) / 10,
        operations,
        errors,
        quickSoak: ctx.quick,
        rssMiB: downsample(samples, durationMs, 60),
      });
      const enough = durationMs >= 120_000 && operations >= 1_000_000;
      notes.push({
        id: ID,
        note:
          `${ctx.quick ? 'QUICK soak, not the 2-minute one: ' : ''}${(durationMs / 1000).toFixed(0)} s, ${operations.toLocaleString('en-US')} operations ` +
          `(${Math.round(operations / (durationMs / 1000)).toLocaleString('en-US')}/s), ${errors} errors; RSS ${(firstMean / MIB).toFixed(1)} -> ${(lastMean / MIB).toFixed(1)} MiB`,
        ...(enough ? { target: '< 5 %', met: growthPct < 5 } : {}),
      });
      ctx.log(`soak: RSS ${(firstMean / MIB).toFixed(1)} -> ${(lastMean / MIB).toFixed(1)} MiB (${growthPct.toFixed(2)} %) over ${operations.toLocaleString('en-US')} operations`);
    } finally {
      await group?.close();
      await bed.dispose();
      untrack();
    }
    return { results, notes };
  },
};
