/**
 * overhead/<op>/c<k>: the virtual slot (an HaGroup with ONE in-process member, default
 * configuration) against pkcs11js used directly on the same token with the very same
 * keys, at k concurrent callers.
 *
 * The baseline is the better of
 *   (a) a sync loop: one caller, C_*Init + C_Encrypt/C_Sign back to back (at c16 it is
 *       still one caller: a sync call blocks the thread, so more callers cannot help);
 *   (b) pkcs11js async calls with k in flight, C_*Init sync before each
 *       C_EncryptAsync/C_SignAsync, every in-flight lane on its own session (two
 *       in-flight calls on one session crash SoftHSM).
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
import { createDecipheriv, createHash, createHmac, createPublicKey, randomBytes, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import type { Mechanism, PKCS11 } from 'pkcs11js';
import type { ObjectHandle } from '../src/catalog/catalog.js';
import { HaGroup } from '../src/group/ha-group.js';
import { acquireModule, releaseModule } from '../src/pkcs11/module-registry.js';
import { pkcs11js } from '../src/pkcs11/pkcs11js.js';
import { toRawTemplate, type MechanismInput } from '../src/pkcs11/templates.js';
import type { VirtualSession } from '../src/slot/virtual-session.js';
import { provisionKeys, standardKeys, type ProvisionedKey } from '../src/testbed/provision.js';
import { createTestbed, type TestbedMemberConfig, type TestbedToken } from '../src/testbed/softhsm-testbed.js';
import {
  closedLoop,
  interleaved,
  median,
  roundRate,
  roundRatio,
  spread,
  syncLoop,
  type BenchContext,
  type BenchFamily,
  type BenchOptions,
  type BenchResult,
  type LoopTiming,
  type ResultNote,
  type Variant,
} from './harness.js';

const OP_NAMES = ['aes-gcm-1k', 'hmac-sha256-1k', 'ecdsa-p256-sign', 'rsa2048-sign'] as const;
type OpName = (typeof OP_NAMES)[number];
const CONCURRENCY = [1, 16] as const;

/** Ratio targets at c16 (from the project brief); shown in the report, not enforced. */
const TARGETS_C16: Record<OpName, number> = {
  'aes-gcm-1k': 0.9,
  'hmac-sha256-1k': 0.8,
  'ecdsa-p256-sign': 1.3,
  'rsa2048-sign': 1.0,
};

const KEY_PREFIX = 'bench';
const SESSION_FLAGS = pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION;

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

// ---------------------------------------------------------------------------------------
// The operations
// ---------------------------------------------------------------------------------------

/** Per-call parameters (the AES-GCM IV); the same call is made on every path. */
interface CallParams {
  readonly iv?: Buffer;
}

interface OpSpec {
  readonly name: OpName;
  readonly kind: 'encrypt' | 'sign';
  readonly keyLabel: string;
  readonly keyClass: 'secretKey' | 'privateKey';
  readonly data: Buffer;
  /** Output buffer size for the direct calls. */
  readonly outLength: number;
  params(): CallParams;
  rawMechanism(params: CallParams): Mechanism;
  groupMechanism(params: CallParams): MechanismInput;
  /** Throws unless `out` is the right output for `data` under `params`. */
  check(out: Buffer, params: CallParams): void;
}

/** 12-byte GCM IVs: a random 4-byte prefix for this run and a 64-bit counter, never repeated. */
const ivPrefix = randomBytes(4).readUInt32BE(0);
let ivCounter = 0n;
function nextIv(): Buffer {
  const iv = Buffer.allocUnsafe(12);
  iv.writeUInt32BE(ivPrefix, 0);
  iv.writeBigUInt64BE(ivCounter++, 4);
  return iv;
}

/** A compact (unpooled) buffer of random bytes, as an application would hand in its data. */
function randomData(length: number): Buffer {
  const b = Buffer.allocUnsafeSlow(length);
  randomBytes(length).copy(b);
  return b;
}

function fail(op: OpName, what: string): never {
  throw new Error(`overhead/${op}: ${what}`);
}

function opSpecs(keys: readonly ProvisionedKey[]): Map<OpName, OpSpec> {
  const key = <K extends ProvisionedKey['kind']>(kind: K): Extract<ProvisionedKey, { kind: K }> => {
    const k = keys.find((x) => x.kind === kind);
    if (k === undefined) throw new Error(`no ${kind} key among the standard keys`);
    return k as Extract<ProvisionedKey, { kind: K }>;
  };
  const aes = key('aes');
  const hmac = key('hmac');
  const ec = key('ec-p256');
  const rsa = key('rsa');
  const ecPublic: KeyObject = createPublicKey(ec.privateKey);
  const rsaPublic: KeyObject = createPublicKey(rsa.privateKey);

  const kib = randomData(1024);
  const hmacData = randomData(1024);
  // ECDSA (CKM_ECDSA) signs a digest computed on the host: the SHA-256 of some message.
  const ecMessage = randomBytes(100);
  const ecDigest = randomData(32);
  createHash('sha256').update(ecMessage).digest().copy(ecDigest);
  const rsaData = randomData(32);

  const specs: OpSpec[] = [
    {
      name: 'aes-gcm-1k',
      kind: 'encrypt',
      keyLabel: aes.label,
      keyClass: 'secretKey',
      data: kib,
      outLength: kib.length + 64,
      params: () => ({ iv: nextIv() }),
      rawMechanism: ({ iv }) => ({
        mechanism: pkcs11js.CKM_AES_GCM,
        parameter: { type: pkcs11js.CK_PARAMS_GCM, iv: iv!, ivBits: 96, tagBits: 128 },
      }),
      groupMechanism: ({ iv }) => ({ name: 'AES_GCM', iv: iv! }),
      check(out, { iv }) {
        if (out.length !== kib.length + 16) fail(this.name, `ciphertext is ${out.length} bytes, expected ${kib.length + 16}`);
        const decipher = createDecipheriv('aes-256-gcm', aes.value, iv!);
        decipher.setAuthTag(out.subarray(out.length - 16));
        const plain = Buffer.concat([decipher.update(out.subarray(0, out.length - 16)), decipher.final()]);
        if (!plain.equals(kib)) fail(this.name, 'ciphertext does not decrypt to the data');
      },
    },
    {
      name: 'hmac-sha256-1k',
      kind: 'sign',
      keyLabel: hmac.label,
      keyClass: 'secretKey',
      data: hmacData,
      outLength: 64,
      params: () => ({}),
      rawMechanism: () => ({ mechanism: pkcs11js.CKM_SHA256_HMAC }),
      groupMechanism: () => 'SHA256_HMAC',
      check(out) {
        const expected = createHmac('sha256', hmac.value).update(hmacData).digest();
        if (!out.equals(expected)) fail(this.name, 'MAC differs from Node crypto');
      },
    },
    {
      name: 'ecdsa-p256-sign',
      kind: 'sign',
      keyLabel: ec.label,
      keyClass: 'privateKey',
      data: ecDigest,
      outLength: 128,
      params: () => ({}),
      rawMechanism: () => ({ mechanism: pkcs11js.CKM_ECDSA }),
      groupMechanism: () => 'ECDSA',
      check(out) {
        if (out.length !== 64) fail(this.name, `signature is ${out.length} bytes, expected 64 (r||s)`);
        if (!cryptoVerify('sha256', ecMessage, { key: ecPublic, dsaEncoding: 'ieee-p1363' }, out)) fail(this.name, 'signature does not verify');
      },
    },
    {
      name: 'rsa2048-sign',
      kind: 'sign',
      keyLabel: rsa.label,
      keyClass: 'privateKey',
      data: rsaData,
      outLength: 512,
      params: () => ({}),
      rawMechanism: () => ({ mechanism: pkcs11js.CKM_SHA256_RSA_PKCS }),
      groupMechanism: () => 'SHA256_RSA_PKCS',
      check(out) {
        if (out.length !== 256) fail(this.name, `signature is ${out.length} bytes, expected 256`);
        if (!cryptoVerify('sha256', rsaData, rsaPublic, out)) fail(this.name, 'signature does not verify');
      },
    },
  ];
  return new Map(specs.map((s) => [s.name, s]));
}

// ---------------------------------------------------------------------------------------
// The baseline: pkcs11js directly
// ---------------------------------------------------------------------------------------

interface Direct {
  readonly p: PKCS11;
  /** One session per lane; the sync loop uses lane 0's (never while lanes run). */
  readonly sessions: readonly Buffer[];
  /** One output buffer per lane (a lane has one call in flight at most). */
  readonly outs: Map<OpName, Buffer[]>;
  readonly keys: Map<OpName, Buffer>;
  close(): void;
}

function openDirect(token: TestbedToken, lanes: number, specs: ReadonlyMap<OpName, OpSpec>): Direct {
  const module = acquireModule(token.modulePath, token.env, `bench baseline (token ${token.label})`);
  const p = module.pkcs11;
  const sessions: Buffer[] = [];
  const close = (): void => {
    try {
      for (const s of sessions.splice(0)) p.C_CloseSession(s);
    } finally {
      releaseModule(module);
    }
  };
  try {
    const slot = p.C_GetSlotList(true).find((s) => {
      const info = p.C_GetTokenInfo(s);
      return (info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0 && info.label.trim() === token.label;
    });
    if (slot === undefined) throw new Error(`token ${token.label} not found`);
    for (let i = 0; i < lanes; i++) sessions.push(p.C_OpenSession(slot, SESSION_FLAGS));
    try {
      p.C_Login(sessions[0]!, pkcs11js.CKU_USER, token.userPin);
    } catch (error) {
      if ((error as { code?: number }).code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw error;
    }
    const keys = new Map<OpName, Buffer>();
    const outs = new Map<OpName, Buffer[]>();
    for (const spec of specs.values()) {
      const s = sessions[0]!;
      p.C_FindObjectsInit(s, toRawTemplate({ label: spec.keyLabel, class: spec.keyClass }));
      let found: Buffer[];
      try {
        found = p.C_FindObjects(s, 4);
      } finally {
        p.C_FindObjectsFinal(s);
      }
      if (found.length !== 1) throw new Error(`baseline: ${found.length} objects labelled ${spec.keyLabel} (${spec.keyClass}), expected 1`);
      keys.set(spec.name, found[0]!);
      outs.set(spec.name, Array.from({ length: lanes }, () => Buffer.alloc(spec.outLength)));
    }
    return { p, sessions, outs, keys, close };
  } catch (error) {
    close();
    throw error;
  }
}

/** One sync call on lane 0's session, into `out` (or a fresh buffer). */
function directSync(d: Direct, spec: OpSpec, key: Buffer, params: CallParams, out: Buffer): Buffer {
  const s = d.sessions[0]!;
  const mechanism = spec.rawMechanism(params);
  if (spec.kind === 'encrypt') {
    d.p.C_EncryptInit(s, mechanism, key);
    return d.p.C_Encrypt(s, spec.data, out);
  }
  d.p.C_SignInit(s, mechanism, key);
  return d.p.C_Sign(s, spec.data, out);
}

/** One async call on `lane`'s session: the Init is sync, the operation goes to the threadpool. */
function directAsync(d: Direct, spec: OpSpec, key: Buffer, lane: number, params: CallParams, out: Buffer): Promise<Buffer> {
  const s = d.sessions[lane]!;
  const mechanism = spec.rawMechanism(params);
  if (spec.kind === 'encrypt') {
    d.p.C_EncryptInit(s, mechanism, key);
    return d.p.C_EncryptAsync(s, spec.data, out);
  }
  d.p.C_SignInit(s, mechanism, key);
  return d.p.C_SignAsync(s, spec.data, out);
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
    ...(variant.threadsPerMember !== undefined ? { threadsPerMember: variant.threadsPerMember } : {}),
  });
  try {
    const sessions = Array.from({ length: lanes }, () => group.slot.openSession());
    await sessions[0]!.login(token.userPin);
    const keys = new Map<OpName, ObjectHandle>();
    for (const spec of specs.values()) {
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

function groupCall(g: OpenGroup, spec: OpSpec, key: ObjectHandle, lane: number, params: CallParams): Promise<Buffer> {
  const session = g.sessions[lane]!;
  const mechanism = spec.groupMechanism(params);
  return spec.kind === 'encrypt' ? session.encrypt(mechanism, key, spec.data) : session.sign(mechanism, key, spec.data);
}

// ---------------------------------------------------------------------------------------
// The family
// ---------------------------------------------------------------------------------------

/** Checks one output of every path (sync, async on every lane in use, each group). */
async function verifyPaths(spec: OpSpec, direct: Direct, groups: readonly OpenGroup[], lanes: number): Promise<void> {
  const key = direct.keys.get(spec.name)!;
  let params = spec.params();
  spec.check(Buffer.from(directSync(direct, spec, key, params, Buffer.alloc(spec.outLength))), params);
  const calls = Array.from({ length: lanes }, (_, lane) => {
    const p = spec.params();
    return directAsync(direct, spec, key, lane, p, Buffer.alloc(spec.outLength)).then((out) => spec.check(out, p));
  });
  await Promise.all(calls);
  for (const g of groups) {
    params = spec.params();
    spec.check(await groupCall(g, spec, g.keys.get(spec.name)!, 0, params), params);
  }
}

function fmtRate(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v >= 10_000) return `${(v / 1000).toFixed(1)}k`;
  if (v >= 1000) return `${(v / 1000).toFixed(2)}k`;
  return v.toFixed(0);
}

export const overhead: BenchFamily = {
  name: 'overhead/',

  ids(options) {
    const ids: string[] = [];
    for (const v of groupVariants(options)) for (const op of OP_NAMES) for (const k of CONCURRENCY) ids.push(idOf(op, k, v.suffix));
    return ids;
  },

  async run(ctx: BenchContext) {
    const variants = groupVariants(ctx.options);
    // What to measure: per op, the concurrencies and group variants asked for.
    const plan = new Map<OpName, { k: number; groups: GroupVariant[] }[]>();
    for (const op of OP_NAMES) {
      const cells = CONCURRENCY.map((k) => ({ k, groups: variants.filter((v) => ctx.wants(idOf(op, k, v.suffix))) })).filter((c) => c.groups.length > 0);
      if (cells.length > 0) plan.set(op, cells);
    }
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    if (plan.size === 0) return { results, notes };
    const usedVariants = variants.filter((v) => [...plan.values()].some((cells) => cells.some((c) => c.groups.includes(v))));
    const lanes = Math.max(...[...plan.values()].flatMap((cells) => cells.map((c) => c.k)));
    const timing: LoopTiming = { durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, signal: ctx.signal };

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
        for (const [op, cells] of plan) {
          const spec = specs.get(op)!;
          const directKey = direct.keys.get(op)!;
          await verifyPaths(spec, direct, groups, lanes);

          const measures: Variant[] = [
            {
              name: 'sync',
              measure: () => {
                const out = direct.outs.get(op)![0]!;
                return syncLoop(() => directSync(direct, spec, directKey, spec.params(), out), timing);
              },
            },
          ];
          for (const { k, groups: wanted } of cells) {
            measures.push({
              name: `async c${k}`,
              measure: () => {
                const outs = direct.outs.get(op)!;
                return closedLoop(k, (lane) => directAsync(direct, spec, directKey, lane, spec.params(), outs[lane]!), timing);
              },
            });
            for (const g of groups.filter((x) => wanted.includes(x.variant))) {
              const groupKey = g.keys.get(op)!;
              measures.push({
                name: `${g.variant.label} c${k}`,
                measure: () => closedLoop(k, (lane) => groupCall(g, spec, groupKey, lane, spec.params()), timing),
              });
            }
          }

          const samples = await interleaved(measures, ctx.reps, ctx.signal, (rep, these) => {
            ctx.log(`overhead/${op} rep ${rep + 1}/${ctx.reps}: ${[...these].map(([n, v]) => `${n} ${fmtRate(v)}`).join(' | ')}`);
          });
          // A last check that every path still gives right answers after the timed runs.
          await verifyPaths(spec, direct, groups, lanes);

          const sync = samples.get('sync')!;
          for (const { k, groups: wanted } of cells) {
            const async = samples.get(`async c${k}`)!;
            const syncMedian = median(sync);
            const asyncMedian = median(async);
            const baseline = Math.max(syncMedian, asyncMedian);
            for (const v of wanted) {
              const values = samples.get(`${v.label} c${k}`)!;
              const value = median(values);
              const id = idOf(op, k, v.suffix);
              const ratio = value / baseline;
              results.push({ id, unit: 'ops/s', value: roundRate(value), baseline: roundRate(baseline), ratio: roundRatio(ratio) });
              const target = k === 16 ? TARGETS_C16[op] : undefined;
              notes.push({
                id,
                note:
                  `baseline ${syncMedian >= asyncMedian ? 'sync' : `async x${k}`} (sync ${fmtRate(syncMedian)}, async x${k} ${fmtRate(asyncMedian)}); ` +
                  `spread group ${(spread(values) * 100).toFixed(0)} %, sync ${(spread(sync) * 100).toFixed(0)} %, async ${(spread(async) * 100).toFixed(0)} %`,
                ...(target !== undefined ? { target: `>= ${target}`, met: ratio >= target } : {}),
              });
              ctx.log(`overhead: ${id}: ${fmtRate(value)}/s vs ${fmtRate(baseline)}/s = ${ratio.toFixed(3)}`);
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
