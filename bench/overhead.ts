/**
 * overhead/<op>/c<k>: the virtual slot (an HaGroup with ONE in-process member, default
 * configuration) against pkcs11js used directly on the same token with the very same
 * keys, at k concurrent callers (k in 1, 16, 64). Every entry also carries latencies of
 * one operation (ms): p50Ms and p99Ms of the virtual slot, baselineP50Ms and baselineP99Ms
 * of the baseline, and directP50Ms and directP99Ms of pkcs11js with the same number of
 * operations in flight (k = 1: the baseline; k > 1: the async calls with k in flight). The
 * sync baseline has one operation in flight whatever k is, so its latency has no queueing
 * in it; compare latencies at equal concurrency (by Little's law latency ~ k / throughput).
 *
 * The baseline is the better of
 *   (a) a sync loop: one caller, C_*Init + C_Encrypt/C_Sign back to back (at c16 it is
 *       still one caller: a sync call blocks the thread, so more callers cannot help);
 *   (b) pkcs11js async calls with k in flight, C_*Init sync before each
 *       C_EncryptAsync/C_SignAsync, every in-flight lane on its own session (two
 *       in-flight calls on one session crash SoftHSM).
 *
 * Workloads (bench/ops.ts): AES-256-GCM encrypt and HMAC-SHA256 of 1 KiB, ECDSA P-256 and
 * RSA-2048 (SHA256_RSA_PKCS) signatures with token keys (CKA_TOKEN, CKA_PRIVATE), and
 * ec-p256-keygen: an EC P-256 session key pair generated and destroyed.
 *
 * Both sides use one loaded instance of the token's module: the baseline takes it from
 * the process-wide module registry (acquireModule) BEFORE the group opens and lets go of
 * it AFTER the group has closed, so it is initialized once with the token's SOFTHSM2_CONF
 * and only the last user finalizes it. Login state is per application and token, so the
 * baseline's C_Login and the group's login share it (the group takes
 * CKR_USER_ALREADY_LOGGED_IN as done).
 *
 * Measurements are interleaved per repetition (sync, async c1, group c1, async c16, group
 * c16, ...), and every path's output is checked with Node's crypto before and after the
 * timed runs, so a broken path cannot pass as a fast one.
 */
import type { ObjectHandle } from '../src/catalog/catalog.js';
import { HaGroup } from '../src/group/ha-group.js';
import type { VirtualSession } from '../src/slot/virtual-session.js';
import { provisionKeys, standardKeys } from '../src/testbed/provision.js';
import { createTestbed, type TestbedMemberConfig, type TestbedToken } from '../src/testbed/softhsm-testbed.js';
import {
  closedLoop,
  entry,
  fmtRate,
  settleAndInterleave,
  SETTLE_MS,
  latencyFields,
  roundMs,
  spread,
  summarize,
  syncLoop,
  type BenchContext,
  type BenchFamily,
  type BenchOptions,
  type BenchResult,
  type LoopTiming,
  type Measurement,
  type ResultNote,
  type Variant,
} from './harness.js';
import { checkDirect, directAsync, directSync, OP_NAMES, openDirect, opSpecs, type CallParams, type Direct, type OpName, type OpSpec } from './ops.js';

/** Concurrencies measured (callers in a closed loop). */
export const CONCURRENCY = [1, 16, 64] as const;

/** Ratio targets at c16 (issue 5); shown in the report, not enforced. */
export const TARGETS_C16: Partial<Record<OpName, number>> = {
  'aes-gcm-1k': 0.9,
  'hmac-sha256-1k': 0.8,
  'ecdsa-p256-sign': 1.3,
  'rsa2048-sign': 1.0,
};

const KEY_PREFIX = 'bench';
/** Seconds of set-up (test bed, key import, group start), for the progress plan. */
const SETUP_SECONDS = 6;

/** A group variant: the default configuration, or one with another threadsPerMember. */
interface GroupVariant {
  /** Suffix of the result id: '' for the default configuration, else `/threads<n>`. */
  readonly suffix: string;
  readonly label: string;
  readonly threadsPerMember: number | undefined;
}

function groupVariants(options: BenchOptions): GroupVariant[] {
  return [
    { suffix: '', label: 'group', threadsPerMember: undefined },
    ...options.threadsPerMember.map((n) => ({ suffix: `/threads${n}`, label: `group/t${n}`, threadsPerMember: n })),
  ];
}

const idOf = (op: OpName, k: number, suffix: string): string => `overhead/${op}/c${k}${suffix}`;

/** Per op, the concurrencies and group variants asked for. */
function planOf(ctx: Pick<BenchContext, 'wants'>, variants: readonly GroupVariant[]): Map<OpName, { k: number; groups: GroupVariant[] }[]> {
  const plan = new Map<OpName, { k: number; groups: GroupVariant[] }[]>();
  for (const op of OP_NAMES) {
    const cells = CONCURRENCY.map((k) => ({ k, groups: variants.filter((v) => ctx.wants(idOf(op, k, v.suffix))) })).filter((c) => c.groups.length > 0);
    if (cells.length > 0) plan.set(op, cells);
  }
  return plan;
}

// ---------------------------------------------------------------------------------------
// The virtual slot
// ---------------------------------------------------------------------------------------

interface OpenGroup {
  readonly variant: GroupVariant;
  readonly group: HaGroup;
  /** One virtual session per lane. */
  readonly sessions: readonly VirtualSession[];
  readonly keys: Map<OpName, ObjectHandle>;
}

async function openGroup(
  variant: GroupVariant,
  token: TestbedToken,
  memberConfigs: TestbedMemberConfig[],
  lanes: number,
  specs: ReadonlyMap<OpName, OpSpec>,
): Promise<OpenGroup> {
  const group = await HaGroup.open({
    members: memberConfigs,
    // overhead/* is defined on ONE in-process member (BENCH-FORMAT); hosts are limit/*.
    transport: 'in-process',
    ...(variant.threadsPerMember !== undefined ? { threadsPerMember: variant.threadsPerMember } : {}),
  });
  try {
    const sessions = Array.from({ length: lanes }, () => group.slot.openSession());
    await sessions[0]!.login(token.userPin);
    const keys = new Map<OpName, ObjectHandle>();
    for (const spec of specs.values()) {
      if (spec.kind === 'keygen') continue;
      const found = await sessions[0]!.findObjects({ label: spec.keyLabel, class: spec.keyClass });
      if (found.length !== 1) throw new Error(`${variant.label}: ${found.length} objects labelled ${spec.keyLabel} (${spec.keyClass}), expected 1`);
      keys.set(spec.name, found[0]!);
    }
    return { variant, group, sessions, keys };
  } catch (error) {
    await group.close();
    throw error;
  }
}

async function groupCall(g: OpenGroup, spec: OpSpec, lane: number, params: CallParams): Promise<Buffer | undefined> {
  const session = g.sessions[lane]!;
  if (spec.kind === 'keygen') {
    const pair = await session.generateKeyPair(spec.groupMechanism, spec.publicTemplate, spec.privateTemplate);
    await session.destroyObject(pair.privateKey);
    await session.destroyObject(pair.publicKey);
    return undefined;
  }
  const key = g.keys.get(spec.name)!;
  const mechanism = spec.groupMechanism(params);
  return spec.kind === 'encrypt' ? session.encrypt(mechanism, key, spec.data) : session.sign(mechanism, key, spec.data);
}

// ---------------------------------------------------------------------------------------
// The family
// ---------------------------------------------------------------------------------------

/** Checks one output of every path (sync, async on every lane in use, each group). */
async function verifyPaths(spec: OpSpec, direct: Direct, groups: readonly OpenGroup[], lanes: number): Promise<void> {
  checkDirect(direct, spec);
  const calls = Array.from({ length: lanes }, (_, lane) => {
    const p = spec.kind === 'keygen' ? {} : spec.params();
    const out = spec.kind === 'keygen' ? undefined : Buffer.alloc(spec.outLength);
    return directAsync(direct, spec, lane, p, out).then((o) => {
      if (spec.kind !== 'keygen') spec.check(o, p);
    });
  });
  await Promise.all(calls);
  for (const g of groups) {
    const params = spec.kind === 'keygen' ? {} : spec.params();
    const out = await groupCall(g, spec, 0, params);
    if (spec.kind !== 'keygen') spec.check(out!, params);
  }
}

/** Kept here for the families that import it from overhead (it lives in harness.ts). */
export { fmtRate } from './harness.js';

const NO_PARAMS: CallParams = {};
const paramsOf = (spec: OpSpec): CallParams => (spec.kind === 'keygen' ? NO_PARAMS : spec.params());

export const overhead: BenchFamily = {
  name: 'overhead/',

  ids(options) {
    const ids: string[] = [];
    for (const v of groupVariants(options)) for (const op of OP_NAMES) for (const k of CONCURRENCY) ids.push(idOf(op, k, v.suffix));
    return ids;
  },

  plannedSeconds(ctx) {
    const plan = planOf(ctx, groupVariants(ctx.options));
    if (plan.size === 0) return 0;
    const per = (ctx.warmupMs + ctx.durationMs) / 1000;
    let runs = 0;
    for (const cells of plan.values()) runs += 1 + cells.reduce((a, c) => a + 1 + c.groups.length, 0);
    return SETUP_SECONDS + runs * (ctx.reps * per + SETTLE_MS / 1000);
  },

  async run(ctx: BenchContext) {
    const variants = groupVariants(ctx.options);
    const plan = planOf(ctx, variants);
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    if (plan.size === 0) return { results, notes };
    const usedVariants = variants.filter((v) => [...plan.values()].some((cells) => cells.some((c) => c.groups.includes(v))));
    const lanes = Math.max(...[...plan.values()].flatMap((cells) => cells.map((c) => c.k)));

    ctx.log('overhead: creating a SoftHSM2 token and importing the keys (AES-256, HMAC, EC P-256, RSA-2048; token, private)');
    const bed = await createTestbed({ count: 1, labelPrefix: 'bench' });
    const untrack = ctx.trackDir(bed.dir);
    try {
      const token = bed.tokens[0]!;
      const keys = standardKeys(KEY_PREFIX);
      provisionKeys(bed.tokens, keys);
      const specs = opSpecs(keys);
      // The baseline takes the module first and lets go of it last (see the file comment).
      const direct = openDirect(token, lanes, specs);
      const groups: OpenGroup[] = [];
      try {
        for (const v of usedVariants) {
          groups.push(await openGroup(v, token, bed.memberConfigs(), lanes, specs));
          ctx.log(`overhead: ${v.label} open (${v.threadsPerMember === undefined ? 'default config' : `threadsPerMember ${v.threadsPerMember}`})`);
        }
        ctx.advance(SETUP_SECONDS);
        for (const [op, cells] of plan) {
          const spec = specs.get(op)!;
          await verifyPaths(spec, direct, groups, lanes);

          const variantsOf = (t: LoopTiming): Variant[] => {
            const list: Variant[] = [{ name: 'sync', measure: () => syncLoop(() => directSync(direct, spec, paramsOf(spec)), t) }];
            for (const { k, groups: wanted } of cells) {
              list.push({ name: `async c${k}`, measure: () => closedLoop(k, (lane) => directAsync(direct, spec, lane, paramsOf(spec)), t) });
              for (const g of groups.filter((x) => wanted.includes(x.variant))) {
                list.push({ name: `${g.variant.label} c${k}`, measure: () => closedLoop(k, (lane) => groupCall(g, spec, lane, paramsOf(spec)), t) });
              }
            }
            return list;
          };
          // Every path settles once, untimed, before the first repetition (see SETTLE_MS).
          const samples = await settleAndInterleave(ctx, `overhead/${op}`, variantsOf);
          // A last check that every path still gives right answers after the timed runs.
          await verifyPaths(spec, direct, groups, lanes);

          const syncSamples = samples.get('sync')!;
          const sync = summarize(syncSamples);
          for (const { k, groups: wanted } of cells) {
            const asyncSamples = samples.get(`async c${k}`)!;
            const async = summarize(asyncSamples);
            const baseline: Measurement = sync.rate >= async.rate ? sync : async;
            for (const v of wanted) {
              const values = samples.get(`${v.label} c${k}`)!;
              const value = summarize(values);
              const id = idOf(op, k, v.suffix);
              const ratio = value.rate / baseline.rate;
              const sameInFlight = k === 1 ? baseline : async;
              results.push(
                entry(id, 'ops/s', value.rate, baseline.rate, {
                  ...latencyFields(value, baseline),
                  directP50Ms: roundMs(sameInFlight.p50Ms),
                  directP99Ms: roundMs(sameInFlight.p99Ms),
                }),
              );
              const target = k === 16 ? TARGETS_C16[op] : undefined;
              const pct = (xs: readonly Measurement[]): string => `${(spread(xs.map((x) => x.rate)) * 100).toFixed(0)} %`;
              notes.push({
                id,
                note:
                  `baseline ${baseline === sync ? 'sync' : `async x${k}`} (sync ${fmtRate(sync.rate)}, async x${k} ${fmtRate(async.rate)}); ` +
                  `spread group ${pct(values)}, sync ${pct(syncSamples)}, async ${pct(asyncSamples)}`,
                ...(target !== undefined ? { target: `>= ${target}`, met: ratio >= target } : {}),
              });
              ctx.log(`overhead: ${id}: ${fmtRate(value.rate)}/s vs ${fmtRate(baseline.rate)}/s = ${ratio.toFixed(3)}; p99 ${value.p99Ms.toFixed(2)} ms vs ${sameInFlight.p99Ms.toFixed(2)} ms direct with ${k} in flight`);
            }
          }
        }
      } finally {
        for (const g of groups.splice(0).reverse()) await g.group.close();
        direct.close();
      }
    } finally {
      await bed.dispose();
      untrack();
    }
    return { results, notes };
  },
};
