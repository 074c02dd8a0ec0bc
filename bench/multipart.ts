/**
 * multipart/<sha256|aes-cbc>-1m/c<k>: 1 MiB in 64 KiB parts (Init, 16 Updates, Final)
 * through the virtual slot with ONE in-process member, against pkcs11js used directly on
 * the same token and key in the same run (BENCH-FORMAT). One operation = 1 MiB.
 *
 * The baseline is a sync loop of one caller: pkcs11js has no async form of any *Update
 * (only of the Final), so more callers cannot make the direct path faster; the group at
 * c16 has 16 operations open at once, each on a leased session of its own.
 * The key is a token object (CKA_TOKEN, CKA_PRIVATE), as an application keeps it.
 * Every path's output is checked with node:crypto before and after the timed runs.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import type { ObjectHandle } from '../src/catalog/catalog.js';
import { HaGroup } from '../src/group/ha-group.js';
import { pkcs11js } from '../src/native/pkcs11js.js';
import { acquireModule, releaseModule } from '../src/pkcs11/module-registry.js';
import { toRawTemplate } from '../src/pkcs11/template-codec.js';
import type { VirtualSession } from '../src/slot/virtual-session.js';
import { provisionKeys, standardKeys } from '../src/testbed/provision.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { closedLoop, entry, fmtRate, latencyFields, settleAndInterleave, SETTLE_MS, spread, summarize, syncLoop, type BenchContext, type BenchFamily, type BenchResult, type LoopTiming, type Measurement, type ResultNote, type Variant } from './harness.js';

const PART = 64 * 1024;
const TOTAL = 1024 * 1024;
const DATA = randomBytes(TOTAL);
const PARTS = Array.from({ length: TOTAL / PART }, (_, i) => DATA.subarray(i * PART, (i + 1) * PART));
const IV = randomBytes(16);
const SETUP_SECONDS = 4;
/** Ratio target of every entry (issue 13). */
const TARGET = 0.9;

type Op = 'sha256-1m' | 'aes-cbc-1m';
const CELLS: readonly { op: Op; k: number }[] = [
  { op: 'sha256-1m', k: 1 },
  { op: 'sha256-1m', k: 16 },
  { op: 'aes-cbc-1m', k: 16 },
];
const idOf = (op: Op, k: number): string => `multipart/${op}/c${k}`;

const EXPECTED_DIGEST = createHash('sha256').update(DATA).digest();
const expectedCbc = (key: Buffer): Buffer => {
  const c = createCipheriv('aes-256-cbc', key, IV).setAutoPadding(false);
  return Buffer.concat([c.update(DATA), c.final()]);
};

/** pkcs11js on the token: one sync operation over the 16 parts. */
function direct(p: InstanceType<typeof pkcs11js.PKCS11>, session: Buffer, op: Op, key: Buffer, out: Buffer): Buffer {
  if (op === 'sha256-1m') {
    p.C_DigestInit(session, { mechanism: pkcs11js.CKM_SHA256 });
    for (const part of PARTS) p.C_DigestUpdate(session, part);
    return p.C_DigestFinal(session, out.subarray(0, 64));
  }
  p.C_EncryptInit(session, { mechanism: pkcs11js.CKM_AES_CBC, parameter: IV }, key);
  let at = 0;
  for (const part of PARTS) at += p.C_EncryptUpdate(session, part, out.subarray(at)).length;
  at += p.C_EncryptFinal(session, out.subarray(at)).length;
  return out.subarray(0, at);
}

/**
 * The virtual slot: one operation over the 16 parts. The output goes into the lane's own
 * buffer, as the direct path writes into its one: each Update is given the rest of it
 * (`encryptUpdate(part, out)`, as pkcs11js's C_EncryptUpdate) and the slot writes there;
 * the Final's few bytes come in a buffer of their own and are copied there.
 */
async function viaGroup(session: VirtualSession, op: Op, key: ObjectHandle, out: Buffer): Promise<Buffer> {
  if (op === 'sha256-1m') {
    await session.digestInit('SHA256');
    for (const part of PARTS) await session.digestUpdate(part);
    return session.digestFinal();
  }
  let at = 0;
  await session.encryptInit({ name: 'AES_CBC', iv: IV }, key);
  for (const part of PARTS) at += (await session.encryptUpdate(part, out.subarray(at))).length;
  at += (await session.encryptFinal()).copy(out, at);
  return out.subarray(0, at);
}

export const multipart: BenchFamily = {
  name: 'multipart/',
  ids: () => CELLS.map((c) => idOf(c.op, c.k)),
  plannedSeconds(ctx) {
    const cells = CELLS.filter((c) => ctx.wants(idOf(c.op, c.k)));
    if (cells.length === 0) return 0;
    const ops = new Set(cells.map((c) => c.op)).size;
    return SETUP_SECONDS + (ops + cells.length) * (ctx.reps * ((ctx.warmupMs + ctx.durationMs) / 1000) + SETTLE_MS / 1000);
  },

  async run(ctx: BenchContext) {
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    const cells = CELLS.filter((c) => ctx.wants(idOf(c.op, c.k)));
    if (cells.length === 0) return { results, notes };
    const lanes = Math.max(...cells.map((c) => c.k));
    ctx.log('multipart: creating a SoftHSM2 token and importing an AES-256 key (token, private)');
    const bed = await createTestbed({ count: 1, labelPrefix: 'bench' });
    const untrack = ctx.trackDir(bed.dir);
    try {
      const token = bed.tokens[0]!;
      const keys = standardKeys('mpbench');
      provisionKeys(bed.tokens, keys);
      const aesValue = (keys.find((k) => k.kind === 'aes') as { value: Buffer }).value;
      const expected: Record<Op, Buffer> = { 'sha256-1m': EXPECTED_DIGEST, 'aes-cbc-1m': expectedCbc(aesValue) };
      // The baseline takes the module first and lets go of it last (as overhead/*).
      const module = acquireModule(token.modulePath, token.env, `bench baseline (token ${token.label})`);
      const p = module.pkcs11;
      const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === token.label)!;
      const session = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      let group: HaGroup | undefined;
      try {
        try {
          p.C_Login(session, pkcs11js.CKU_USER, token.userPin);
        } catch (error) {
          if ((error as { code?: number }).code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw error;
        }
        p.C_FindObjectsInit(session, toRawTemplate({ label: 'mpbench-aes' }));
        const [directKey] = p.C_FindObjects(session, 2);
        p.C_FindObjectsFinal(session);
        if (directKey === undefined) throw new Error('multipart: the AES key was not found');
        const out = Buffer.alloc(TOTAL + 1024);

        group = await HaGroup.open({ members: bed.memberConfigs(), transport: 'in-process' });
        const sessions = Array.from({ length: lanes }, () => group!.slot.openSession());
        const outs = Array.from({ length: lanes }, () => Buffer.alloc(TOTAL + 1024));
        await sessions[0]!.login(token.userPin);
        const [groupKey] = await sessions[0]!.findObjects({ label: 'mpbench-aes' });
        if (groupKey === undefined) throw new Error('multipart: the group does not see the AES key');
        ctx.advance(SETUP_SECONDS);

        const check = async (op: Op): Promise<void> => {
          if (!direct(p, session, op, directKey, out).equals(expected[op])) throw new Error(`multipart/${op}: pkcs11js gave a wrong result`);
          const results = await Promise.all(sessions.map((s, lane) => viaGroup(s, op, groupKey, outs[lane]!)));
          if (!results.every((o) => o.equals(expected[op]))) throw new Error(`multipart/${op}: the virtual slot gave a wrong result`);
        };
        for (const op of new Set(cells.map((c) => c.op))) {
          const these = cells.filter((c) => c.op === op);
          await check(op);
          const variantsOf = (t: LoopTiming): Variant[] => [
            { name: 'sync', measure: () => syncLoop(() => direct(p, session, op, directKey, out), t) },
            ...these.map((c) => ({ name: `group c${c.k}`, measure: () => closedLoop(c.k, (lane) => viaGroup(sessions[lane]!, op, groupKey, outs[lane]!), t) })),
          ];
          const samples = await settleAndInterleave(ctx, `multipart/${op}`, variantsOf);
          await check(op);
          const syncSamples = samples.get('sync')!;
          const baseline = summarize(syncSamples);
          for (const c of these) {
            const values = samples.get(`group c${c.k}`)!;
            const value = summarize(values);
            const id = idOf(op, c.k);
            const ratio = value.rate / baseline.rate;
            results.push(entry(id, 'ops/s', value.rate, baseline.rate, latencyFields(value, baseline)));
            const pct = (xs: readonly Measurement[]): string => `${(spread(xs.map((x) => x.rate)) * 100).toFixed(0)} %`;
            notes.push({ id, note: `1 MiB per op in 64 KiB parts; baseline sync (pkcs11js has no async Update); spread group ${pct(values)}, sync ${pct(syncSamples)}`, target: `>= ${TARGET}`, met: ratio >= TARGET });
            ctx.log(`multipart: ${id}: ${fmtRate(value.rate)}/s vs ${fmtRate(baseline.rate)}/s = ${ratio.toFixed(3)}`);
          }
        }
      } finally {
        await group?.close();
        p.C_CloseSession(session);
        releaseModule(module);
      }
    } finally {
      await bed.dispose();
      untrack();
    }
    return { results, notes };
  },
};
