/**
 * keygen/<aes|ec-p256|rsa2048>/members<n>: latency (ms, median) of generating a token key
 * through the virtual slot with n members, against the same with 1 member (the baseline,
 * measured in the same run). With n > 1 the key is wrapped under the domain key on the
 * primary and unwrapped on every other member in parallel before the call returns.
 *
 * One test bed of 3 tokens with one domain; groups over its first n tokens, interleaved
 * per repetition so machine noise hits every n alike. Keys are destroyed after each
 * repetition (untimed).
 */
import { performance } from 'node:perf_hooks';
import { HaGroup } from '../src/group/ha-group.js';
import type { VirtualSession } from '../src/slot/virtual-session.js';
import type { ObjectHandle } from '../src/catalog/catalog.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { checkAborted, latencyFields, median, percentile, spread, type BenchContext, type BenchFamily, type BenchResult, type ResultNote } from './harness.js';

const KINDS = ['aes', 'ec-p256', 'rsa2048'] as const;
type Kind = (typeof KINDS)[number];
const MEMBERS = [1, 2, 3] as const;
/** Target for 3 members (from the project brief), shown in the report. */
const TARGET_3: Partial<Record<Kind, number>> = { 'ec-p256': 1.5, rsa2048: 1.5 };

async function generate(session: VirtualSession, kind: Kind, label: string): Promise<ObjectHandle[]> {
  switch (kind) {
    case 'aes':
      return [await session.generateKey('AES_KEY_GEN', { label, valueLen: 32, token: true, encrypt: true, decrypt: true })];
    case 'ec-p256': {
      const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label, curve: 'P-256', token: true, verify: true }, { label, token: true, sign: true });
      return [pair.publicKey, pair.privateKey];
    }
    case 'rsa2048': {
      const pair = await session.generateKeyPair(
        'RSA_PKCS_KEY_PAIR_GEN',
        { label, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), token: true, verify: true },
        { label, token: true, sign: true },
      );
      return [pair.publicKey, pair.privateKey];
    }
  }
}

const id = (kind: Kind, n: number): string => `keygen/${kind}/members${n}`;

/**
 * Generations per member count and repetition. RSA takes more than its cost alone asks
 * for: the prime search spreads one generation's time widely (spreads of 100-200 % in
 * quick runs), so 9 in a quick run left the members3 ratio moving by half between runs
 * (15 is what the quick run's 5 minutes leave room for).
 */
const perRepOf = (kind: Kind, quick: boolean): number => (quick ? { aes: 10, 'ec-p256': 10, rsa2048: 5 } : { aes: 30, 'ec-p256': 30, rsa2048: 12 })[kind];
/** About how long one generation takes here (ms), for the progress plan only. */
const EXPECTED_MS: Record<Kind, number> = { aes: 20, 'ec-p256': 35, rsa2048: 250 };

/** p50 and p99 of some latencies. */
function latencies(values: readonly number[]): { p50Ms: number; p99Ms: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
}

/** The keygen family. */
export const keygen: BenchFamily = {
  name: 'keygen',
  ids: () => KINDS.flatMap((k) => MEMBERS.map((n) => id(k, n))),
  plannedSeconds(ctx) {
    const kinds = KINDS.filter((k) => MEMBERS.some((n) => ctx.wants(id(k, n))));
    if (kinds.length === 0) return 0;
    // Creating the 3-token bed and the domain, then per generation (plus its destroy).
    return 5 + kinds.reduce((a, k) => a + (ctx.reps * MEMBERS.length * perRepOf(k, ctx.quick) * EXPECTED_MS[k] * 1.5) / 1000, 0);
  },
  async run(ctx: BenchContext) {
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    const kinds = KINDS.filter((k) => MEMBERS.some((n) => ctx.wants(id(k, n))));
    if (kinds.length === 0) return { results, notes };
    const bed = await createTestbed({ count: 3, labelPrefix: 'keygen' });
    const untrack = ctx.trackDir(bed.dir);
    const groups: HaGroup[] = [];
    try {
      await HaGroup.initDomain({ members: bed.memberConfigs() });
      ctx.advance(5);
      const sessions = new Map<number, VirtualSession>();
      for (const n of MEMBERS) {
        // In-process: the groups share each token's module, so one login covers them all.
        const group = await HaGroup.open({ members: bed.memberConfigs().slice(0, n), transport: 'in-process' });
        groups.push(group);
        const session = group.slot.openSession();
        if (n === 1) await session.login(bed.tokens[0]!.userPin);
        sessions.set(n, session);
      }
      // Login state is per token and application: the first login covers the groups
      // that share the tokens; the others take "already logged in" as done.
      for (const n of MEMBERS.slice(1)) await sessions.get(n)!.login(bed.tokens[0]!.userPin).catch(() => undefined);
      for (const kind of kinds) {
        const perRep = perRepOf(kind, ctx.quick);
        const samples = new Map<number, number[]>(MEMBERS.map((n) => [n, []]));
        for (let rep = 0; rep < ctx.reps; rep++) {
          const order = rep % 2 === 0 ? [...MEMBERS] : [...MEMBERS].reverse();
          for (const n of order) {
            checkAborted(ctx.signal);
            const session = sessions.get(n)!;
            const made: ObjectHandle[] = [];
            for (let i = 0; i < perRep; i++) {
              const start = performance.now();
              made.push(...(await generate(session, kind, `keygen-${kind}-${n}`)));
              samples.get(n)!.push(performance.now() - start);
            }
            for (const h of made) await session.destroyObject(h);
            ctx.advance((perRep * EXPECTED_MS[kind] * 1.5) / 1000);
          }
          ctx.log(`keygen/${kind} rep ${rep + 1}/${ctx.reps}: ${MEMBERS.map((n) => `m${n} ${median(samples.get(n)!).toFixed(1)} ms`).join(' | ')}`);
        }
        const base = median(samples.get(1)!);
        for (const n of MEMBERS) {
          if (!ctx.wants(id(kind, n))) continue;
          const value = median(samples.get(n)!);
          const ratio = value / base;
          results.push({
            id: id(kind, n),
            unit: 'ms',
            value: Number(value.toFixed(2)),
            baseline: Number(base.toFixed(2)),
            ratio: Number(ratio.toFixed(3)),
            ...latencyFields(latencies(samples.get(n)!), latencies(samples.get(1)!)),
          });
          const target = n === 3 ? TARGET_3[kind] : undefined;
          notes.push({
            id: id(kind, n),
            note: `median of ${samples.get(n)!.length} generations; spread ${Math.round(spread(samples.get(n)!) * 100)} %`,
            ...(target !== undefined ? { target: `<= ${target}`, met: ratio <= target } : {}),
          });
        }
      }
    } finally {
      await Promise.allSettled(groups.map((g) => g.close()));
      await bed.dispose();
      untrack();
    }
    return { results, notes };
  },
};
