/**
 * The workloads of the benchmark, and pkcs11js used directly on a token (the baselines).
 * Shared by the overhead family (in this process) and the machine-limit children (one
 * process per core), so that every side runs the very same calls with the same keys.
 */
import { createDecipheriv, createHash, createHmac, createPrivateKey, createPublicKey, randomBytes, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import type { Mechanism, PKCS11, Template } from 'pkcs11js';
import { acquireModule, releaseModule } from '../src/pkcs11/module-registry.js';
import { pkcs11js } from '../src/native/pkcs11js.js';
import type { MechanismInput } from '../src/pkcs11/mechanism-table.js';
import { toRawTemplate, type FriendlyTemplate } from '../src/pkcs11/template-codec.js';
import type { ProvisionedKey } from '../src/testbed/provision.js';

/** Every workload, in report order. */
export const OP_NAMES = ['aes-gcm-1k', 'hmac-sha256-1k', 'ecdsa-p256-sign', 'rsa2048-sign', 'ec-p256-keygen'] as const;
/** A workload's name, as it appears in result ids. */
export type OpName = (typeof OP_NAMES)[number];
/** The workloads that use a provisioned key (all but key generation). */
export const KEYED_OPS = ['aes-gcm-1k', 'hmac-sha256-1k', 'ecdsa-p256-sign', 'rsa2048-sign'] as const satisfies readonly OpName[];
/** A workload that uses a provisioned key. */
export type KeyedOpName = (typeof KEYED_OPS)[number];

/** Per-call parameters (the AES-GCM IV); the same call is made on every path. */
export interface CallParams {
  readonly iv?: Buffer;
}

/** An encryption or signature with a provisioned key. */
export interface KeyedOpSpec {
  readonly name: KeyedOpName;
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

/**
 * Generation of an EC P-256 key pair as session objects, then its destruction: what an
 * application does for ephemeral keys. Session objects keep the token's files out of it
 * (token objects cost ~6 ms of file I/O each, measured by keygen/*), so this shows the
 * library's own cost of a key-management round trip.
 */
export interface KeygenOpSpec {
  readonly name: 'ec-p256-keygen';
  readonly kind: 'keygen';
  readonly mechanism: Mechanism;
  readonly groupMechanism: MechanismInput;
  readonly publicTemplate: FriendlyTemplate;
  readonly privateTemplate: FriendlyTemplate;
  readonly rawPublic: Template;
  readonly rawPrivate: Template;
}

/** One workload. */
export type OpSpec = KeyedOpSpec | KeygenOpSpec;

/** 12-byte GCM IVs: a random 4-byte prefix for this process and a 64-bit counter, never repeated. */
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
  throw new Error(`${op}: ${what}`);
}

const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');

/** The key generation workload (no provisioned key needed). */
export function keygenSpec(): KeygenOpSpec {
  const publicTemplate: FriendlyTemplate = { class: 'publicKey', keyType: 'ec', ecParams: P256_PARAMS, token: false, verify: true, label: 'bench-ephemeral' };
  const privateTemplate: FriendlyTemplate = { class: 'privateKey', keyType: 'ec', token: false, private: true, sensitive: true, sign: true, label: 'bench-ephemeral' };
  return {
    name: 'ec-p256-keygen',
    kind: 'keygen',
    mechanism: { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
    groupMechanism: 'EC_KEY_PAIR_GEN',
    publicTemplate,
    privateTemplate,
    rawPublic: toRawTemplate(publicTemplate),
    rawPrivate: toRawTemplate(privateTemplate),
  };
}

/** Every workload, over the keys of {@link standardKeys} (from src/testbed/provision.ts). */
export function opSpecs(keys: readonly ProvisionedKey[]): Map<OpName, OpSpec> {
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
    keygenSpec(),
  ];
  return new Map(specs.map((s) => [s.name, s]));
}

// ---------------------------------------------------------------------------------------
// pkcs11js directly
// ---------------------------------------------------------------------------------------

const SESSION_FLAGS = pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION;

/** What {@link openDirect} needs of a token (a TestbedToken has it all). */
export interface DirectToken {
  readonly modulePath: string;
  readonly env: Readonly<Record<string, string>>;
  readonly label: string;
  readonly userPin: string;
}

/** pkcs11js on one token: a session per lane, logged in, with the keys found once. */
export interface Direct {
  readonly p: PKCS11;
  /** One session per lane; the sync loop uses lane 0's (never while lanes run). */
  readonly sessions: readonly Buffer[];
  /** One output buffer per lane and workload (a lane has one call in flight at most). */
  readonly outs: Map<OpName, Buffer[]>;
  readonly keys: Map<OpName, Buffer>;
  close(): void;
}

/**
 * Opens `lanes` sessions on the token through the process-wide module registry (so a
 * group in the same process shares the one initialized module instance), logs in and
 * finds each keyed workload's key.
 */
export function openDirect(token: DirectToken, lanes: number, specs: ReadonlyMap<OpName, OpSpec>): Direct {
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
      if (spec.kind === 'keygen') continue;
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

/**
 * One sync call on `lane`'s session (lane 0 unless several processes or loops share the
 * Direct), into the lane's output buffer. Key generation destroys the pair it made.
 * @returns the output (a view of the lane's buffer), or an empty buffer for key generation
 */
export function directSync(d: Direct, spec: OpSpec, params: CallParams, lane = 0): Buffer {
  const s = d.sessions[lane]!;
  if (spec.kind === 'keygen') {
    const pair = d.p.C_GenerateKeyPair(s, spec.mechanism, spec.rawPublic, spec.rawPrivate);
    d.p.C_DestroyObject(s, pair.privateKey);
    d.p.C_DestroyObject(s, pair.publicKey);
    return EMPTY;
  }
  const key = d.keys.get(spec.name)!;
  const out = d.outs.get(spec.name)![lane]!;
  const mechanism = spec.rawMechanism(params);
  if (spec.kind === 'encrypt') {
    d.p.C_EncryptInit(s, mechanism, key);
    return d.p.C_Encrypt(s, spec.data, out);
  }
  d.p.C_SignInit(s, mechanism, key);
  return d.p.C_Sign(s, spec.data, out);
}

const EMPTY = Buffer.alloc(0);

/** One async call on `lane`'s session: the Init is sync, the operation goes to the threadpool. */
export async function directAsync(d: Direct, spec: OpSpec, lane: number, params: CallParams, out?: Buffer): Promise<Buffer> {
  const s = d.sessions[lane]!;
  if (spec.kind === 'keygen') {
    const pair = await d.p.C_GenerateKeyPairAsync(s, spec.mechanism, spec.rawPublic, spec.rawPrivate);
    d.p.C_DestroyObject(s, pair.privateKey);
    d.p.C_DestroyObject(s, pair.publicKey);
    return EMPTY;
  }
  const key = d.keys.get(spec.name)!;
  const buffer = out ?? d.outs.get(spec.name)![lane]!;
  const mechanism = spec.rawMechanism(params);
  if (spec.kind === 'encrypt') {
    d.p.C_EncryptInit(s, mechanism, key);
    return d.p.C_EncryptAsync(s, spec.data, buffer);
  }
  d.p.C_SignInit(s, mechanism, key);
  return d.p.C_SignAsync(s, spec.data, buffer);
}

/**
 * Checks one sync output of a workload on lane `lane` (key generation: the pair is made,
 * its public point read and both halves destroyed).
 */
export function checkDirect(d: Direct, spec: OpSpec, lane = 0): void {
  if (spec.kind === 'keygen') {
    const s = d.sessions[lane]!;
    const pair = d.p.C_GenerateKeyPair(s, spec.mechanism, spec.rawPublic, spec.rawPrivate);
    try {
      const [point] = d.p.C_GetAttributeValue(s, pair.publicKey, [{ type: pkcs11js.CKA_EC_POINT }]);
      if ((point?.value as Buffer | undefined)?.length !== 67) fail(spec.name, 'the public key has no 67-byte EC point');
    } finally {
      d.p.C_DestroyObject(s, pair.privateKey);
      d.p.C_DestroyObject(s, pair.publicKey);
    }
    return;
  }
  const params = spec.params();
  spec.check(Buffer.from(directSync(d, spec, params, lane)), params);
}

// ---------------------------------------------------------------------------------------
// Keys across a process boundary
// ---------------------------------------------------------------------------------------

/** A {@link ProvisionedKey} as plain data (for a child process's IPC channel). */
export type PortableKey =
  | { readonly kind: 'aes' | 'hmac'; readonly label: string; readonly valueHex: string }
  | { readonly kind: 'ec-p256' | 'rsa'; readonly label: string; readonly pkcs8Pem: string };

/** Turns keys into plain data, so a child can check its outputs like this process. */
export function toPortable(keys: readonly ProvisionedKey[]): PortableKey[] {
  return keys.map((k) =>
    k.kind === 'aes' || k.kind === 'hmac'
      ? { kind: k.kind, label: k.label, valueHex: k.value.toString('hex') }
      : { kind: k.kind, label: k.label, pkcs8Pem: k.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() },
  );
}

/** The keys again from {@link toPortable}'s data. */
export function fromPortable(keys: readonly PortableKey[]): ProvisionedKey[] {
  return keys.map((k): ProvisionedKey => {
    switch (k.kind) {
      case 'aes':
      case 'hmac':
        return { kind: k.kind, label: k.label, value: Buffer.from(k.valueHex, 'hex') };
      case 'ec-p256':
      case 'rsa':
        return { kind: k.kind, label: k.label, privateKey: createPrivateKey(k.pkcs8Pem) };
    }
  });
}
