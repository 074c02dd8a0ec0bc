/**
 * facade/ecdsa-p256-sign/<sync-c1|async-c16>: the pkcs11js facade (`pkcs11-ha/pkcs11js`)
 * against pkcs11js used directly on the same token and key, in the same run (BENCH-FORMAT).
 *
 * - sync-c1: one caller making the synchronous calls an unchanged pkcs11js application
 *   makes (C_SignInit, C_Sign), against the same loop on pkcs11js.
 * - async-c16: 16 callers with the promise forms (C_SignInitAsync, C_SignAsync), each on
 *   its own session, against the better of pkcs11js's sync loop and its async calls with 16
 *   in flight (C_SignInit sync, C_SignAsync), each on its own session.
 *
 * The group's shape (as overhead/*): ONE in-process member on the benchmark's token. What
 * is measured is the facade's own cost: the caller's thread hop to the facade worker (where
 * the group runs) and its bookkeeping. A facade over member host processes adds the hop to
 * the host (overhead/* against limit/* and remote/* show that cost on its own).
 * The key is a token object (CKA_TOKEN, CKA_PRIVATE), as an application keeps it; every
 * path's signature is verified with node:crypto before and after the timed runs.
 */
import type * as Pkcs11js from 'pkcs11js';
import { PKCS11 } from '../src/facade/pkcs11.js';
import { pkcs11js } from '../src/native/pkcs11js.js';
import { toRawTemplate } from '../src/pkcs11/template-codec.js';
import { provisionKeys, standardKeys } from '../src/testbed/provision.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { closedLoop, entry, fmtRate, latencyFields, settleAndInterleave, SETTLE_MS, spread, summarize, syncLoop, type BenchContext, type BenchFamily, type BenchResult, type LoopTiming, type Measurement, type ResultNote, type Variant } from './harness.js';
import { checkDirect, directAsync, directSync, openDirect, opSpecs, type KeyedOpSpec } from './ops.js';

const SETUP_SECONDS = 6;
const OP = 'ecdsa-p256-sign';
const LANES = 16;
const CELLS = [
  { id: `facade/${OP}/sync-c1`, target: 0.7 },
  { id: `facade/${OP}/async-c16`, target: 1.0 },
] as const;

/** The facade's side: a PKCS11 over the group, a session per lane, the key found once. */
interface FacadeSide {
  readonly p: PKCS11;
  readonly sessions: readonly Buffer[];
  readonly key: Buffer;
  readonly outs: readonly Buffer[];
}

function facadeSync(f: FacadeSide, spec: KeyedOpSpec, mechanism: Pkcs11js.Mechanism): Buffer {
  const s = f.sessions[0]!;
  f.p.C_SignInit(s, mechanism, f.key);
  return f.p.C_Sign(s, spec.data, f.outs[0]!);
}

async function facadeAsync(f: FacadeSide, spec: KeyedOpSpec, mechanism: Pkcs11js.Mechanism, lane: number): Promise<Buffer> {
  const s = f.sessions[lane]!;
  await f.p.C_SignInitAsync(s, mechanism, f.key);
  return f.p.C_SignAsync(s, spec.data, f.outs[lane]!);
}

export const facade: BenchFamily = {
  name: 'facade/',
  ids: () => CELLS.map((c) => c.id),
  plannedSeconds(ctx) {
    const cells = CELLS.filter((c) => ctx.wants(c.id));
    if (cells.length === 0) return 0;
    // Variants: direct sync, direct async c16, facade sync, facade async c16 (those asked for).
    return SETUP_SECONDS + (cells.length * 2 + 1) * (ctx.reps * ((ctx.warmupMs + ctx.durationMs) / 1000) + SETTLE_MS / 1000);
  },

  async run(ctx: BenchContext) {
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    const cells = CELLS.filter((c) => ctx.wants(c.id));
    if (cells.length === 0) return { results, notes };
    ctx.log('facade: creating a SoftHSM2 token and importing an EC P-256 key (token, private)');
    const bed = await createTestbed({ count: 1, labelPrefix: 'bench' });
    const untrack = ctx.trackDir(bed.dir);
    try {
      const token = bed.tokens[0]!;
      const keys = standardKeys('fcbench');
      provisionKeys(bed.tokens, keys);
      const spec = opSpecs(keys).get(OP) as KeyedOpSpec;
      // The baseline takes the module first and lets go of it last (as overhead/*): the
      // facade worker's member finds it initialized and shares the instance.
      const direct = openDirect(token, LANES, new Map([[OP, spec]]));
      let p: PKCS11 | undefined;
      try {
        const { soPin: _so, ...member } = bed.memberConfigs()[0]!;
        p = new PKCS11({ members: [member], transport: 'in-process' });
        p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
        const slot = p.C_GetSlotList(true)[0]!;
        const sessions = Array.from({ length: LANES }, () => p!.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION));
        p.C_Login(sessions[0]!, pkcs11js.CKU_USER, token.userPin);
        p.C_FindObjectsInit(sessions[0]!, toRawTemplate({ label: spec.keyLabel, class: spec.keyClass }));
        const [key] = p.C_FindObjects(sessions[0]!, 2);
        p.C_FindObjectsFinal(sessions[0]!);
        if (key === undefined) throw new Error('facade: the group does not see the EC key');
        const side: FacadeSide = { p, sessions, key, outs: sessions.map(() => Buffer.alloc(spec.outLength)) };
        const mechanism = spec.rawMechanism(spec.params());
        ctx.advance(SETUP_SECONDS);

        const check = async (): Promise<void> => {
          checkDirect(direct, spec);
          spec.check(Buffer.from(facadeSync(side, spec, mechanism)), {});
          const outs = await Promise.all(sessions.map((_, lane) => facadeAsync(side, spec, mechanism, lane)));
          for (const o of outs) spec.check(Buffer.from(o), {});
        };
        await check();
        const wantSync = ctx.wants(CELLS[0].id);
        const wantAsync = ctx.wants(CELLS[1].id);
        const variantsOf = (t: LoopTiming): Variant[] => [
          { name: 'direct sync', measure: () => syncLoop(() => directSync(direct, spec, {}), t) },
          ...(wantAsync ? [{ name: 'direct async c16', measure: () => closedLoop(LANES, (lane) => directAsync(direct, spec, lane, {}), t) }] : []),
          ...(wantSync ? [{ name: 'facade sync', measure: () => syncLoop(() => facadeSync(side, spec, mechanism), t) }] : []),
          ...(wantAsync ? [{ name: 'facade async c16', measure: () => closedLoop(LANES, (lane) => facadeAsync(side, spec, mechanism, lane), t) }] : []),
        ];
        const samples = await settleAndInterleave(ctx, 'facade', variantsOf);
        await check();
        const pct = (xs: readonly Measurement[]): string => `${(spread(xs.map((x) => x.rate)) * 100).toFixed(0)} %`;
        const directSyncRate = summarize(samples.get('direct sync')!);
        for (const c of cells) {
          const sync = c.id.endsWith('sync-c1');
          const values = samples.get(sync ? 'facade sync' : 'facade async c16')!;
          const value = summarize(values);
          const directAsyncRate = sync ? undefined : summarize(samples.get('direct async c16')!);
          const baseline = directAsyncRate !== undefined && directAsyncRate.rate > directSyncRate.rate ? directAsyncRate : directSyncRate;
          const baselineName = baseline === directSyncRate ? 'pkcs11js sync, one caller' : 'pkcs11js async, 16 in flight';
          const ratio = value.rate / baseline.rate;
          results.push(entry(c.id, 'ops/s', value.rate, baseline.rate, latencyFields(value, baseline)));
          notes.push({
            id: c.id,
            note: `one in-process member; baseline ${baselineName}${directAsyncRate ? ` (sync ${fmtRate(directSyncRate.rate)}/s, async c16 ${fmtRate(directAsyncRate.rate)}/s)` : ''}; spread facade ${pct(values)}`,
            target: `>= ${c.target}`,
            met: ratio >= c.target,
          });
          ctx.log(`facade: ${c.id}: ${fmtRate(value.rate)}/s vs ${fmtRate(baseline.rate)}/s = ${ratio.toFixed(3)}`);
        }
      } finally {
        p?.C_Finalize();
        direct.close();
      }
    } finally {
      await bed.dispose();
      untrack();
    }
    return { results, notes };
  },
};
