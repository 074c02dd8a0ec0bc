/**
 * Multi-part operations when their member host dies or hangs between two Update calls,
 * on real member host processes and SoftHSM2 tokens: replayable operations complete with
 * the right result and no error; one past the replay bound, and an ECDSA one, end with the
 * typed restart error; AES-CBC, ECB and CTR ones are taken up from their last block, past the
 * bound too. Hosts are killed (SIGKILL) or frozen (SIGSTOP) by pid; waits are
 * bounded polls.
 */
import { createCipheriv, createHash, createHmac, randomBytes, sign as nodeSign, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { GroupConfig } from '../../src/group/group-config.js';
import type { HaGroup } from '../../src/group/ha-group.js';
import { HostTransport } from '../../src/host/host-transport.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { standardKeys } from '../../src/testbed/provision.js';
import { internalsOf } from '../../src/testing.js';
import { hostGroups } from '../helpers/host-groups.js';
import { until } from '../helpers/until.js';

const KEYS = standardKeys('mf');
const AES = (KEYS.find((k) => k.kind === 'aes') as { value: Buffer }).value;
const HMAC = (KEYS.find((k) => k.kind === 'hmac') as { value: Buffer }).value;
const RSA = (KEYS.find((k) => k.kind === 'rsa') as { privateKey: KeyObject }).privateKey;
/** The replay bound per operation here: every case below keeps less, the bound case more. */
const BOUND = 4096;

const hosts = hostGroups(KEYS);

interface Opened {
  readonly g: HaGroup;
  readonly session: VirtualSession;
  readonly key: Record<'aes' | 'hmac' | 'rsa' | 'ec', number>;
}

async function open(extra: Partial<GroupConfig>): Promise<Opened> {
  const g = await hosts.open({ members: hosts.bed.memberConfigs(), transport: 'host', multipartReplay: { operationBytes: BOUND }, ...extra });
  const session = g.slot.openSession();
  await session.login(hosts.bed.tokens[0]!.userPin);
  const one = async (template: Record<string, unknown>): Promise<number> => (await session.findObjects(template))[0]!;
  const key = {
    aes: await one({ label: 'mf-aes' }),
    hmac: await one({ label: 'mf-hmac' }),
    rsa: await one({ label: 'mf-rsa', class: 'privateKey' }),
    ec: await one({ label: 'mf-ec', class: 'privateKey' }),
  };
  return { g, session, key };
}

/** The pid of the host of the member the group's multi-part operations run on (the primary). */
function primaryPid(g: HaGroup): number {
  const t = internalsOf(g).membership.primary!.transport;
  if (!(t instanceof HostTransport) || t.pid === undefined) throw new Error('the primary has no host process');
  return t.pid;
}

type Fault = (pid: number) => void;
const kill: Fault = (pid) => process.kill(pid, 'SIGKILL');
const stop: Fault = (pid) => hosts.freeze(pid);

/** One replayable operation: its Init, the kind of its Updates and Final, and node:crypto's answer. */
interface Case {
  readonly name: string;
  readonly steps: 'digest' | 'sign' | 'encrypt' | 'encrypt into out';
  init(o: Opened): Promise<void>;
  expected(data: Buffer): Buffer;
}

/**
 * Runs a case through the session: Init, parts 0 and 1, `between`, part 2, Final. Gives
 * what the Updates and the Final returned, concatenated (encryption output returned before
 * the failure is part of it).
 */
async function run(c: Case, o: Opened, parts: Buffer[], between: () => void): Promise<Buffer> {
  const { session } = o;
  const [update, final] = {
    digest: [(p: Buffer) => session.digestUpdate(p), () => session.digestFinal()],
    sign: [(p: Buffer) => session.signUpdate(p), () => session.signFinal()],
    encrypt: [(p: Buffer) => session.encryptUpdate(p), () => session.encryptFinal()],
    // One output buffer of the caller's, reused for every part (what was returned is copied out first).
    'encrypt into out': [async (p: Buffer) => Buffer.from(await session.encryptUpdate(p, reusedOut)), () => session.encryptFinal()],
  }[c.steps] as [(p: Buffer) => Promise<Buffer | void>, () => Promise<Buffer>];
  const out: Buffer[] = [];
  const step = async (part: Buffer): Promise<void> => {
    const got = await update(part);
    if (got) out.push(got);
  };
  await c.init(o);
  await step(parts[0]!);
  await step(parts[1]!);
  between();
  await step(parts[2]!);
  out.push(await final());
  return Buffer.concat(out);
}

const iv = randomBytes(16);
const gcmIv = randomBytes(12);
const reusedOut = Buffer.alloc(64 * 1024);

const CASES: Case[] = [
  {
    name: 'SHA-256 digest',
    steps: 'digest',
    init: ({ session }) => session.digestInit('SHA256'),
    expected: (data) => createHash('sha256').update(data).digest(),
  },
  {
    name: 'HMAC-SHA256',
    steps: 'sign',
    init: ({ session, key }) => session.signInit('SHA256_HMAC', key.hmac),
    expected: (data) => createHmac('sha256', HMAC).update(data).digest(),
  },
  {
    name: 'AES-CBC-PAD encryption (output returned before the failure is checked against the replay)',
    steps: 'encrypt',
    init: ({ session, key }) => session.encryptInit({ name: 'AES_CBC_PAD', iv }, key.aes),
    expected: (data) => {
      const c = createCipheriv('aes-256-cbc', AES, iv);
      return Buffer.concat([c.update(data), c.final()]);
    },
  },
  {
    name: "AES-CBC-PAD encryption into the caller's reused buffer (out)",
    steps: 'encrypt into out',
    init: ({ session, key }) => session.encryptInit({ name: 'AES_CBC_PAD', iv }, key.aes),
    expected: (data) => {
      const c = createCipheriv('aes-256-cbc', AES, iv);
      return Buffer.concat([c.update(data), c.final()]);
    },
  },
  {
    name: 'AES-GCM encryption',
    steps: 'encrypt',
    init: ({ session, key }) => session.encryptInit({ name: 'AES_GCM', iv: gcmIv }, key.aes),
    expected: (data) => {
      const c = createCipheriv('aes-256-gcm', AES, gcmIv);
      return Buffer.concat([c.update(data), c.final(), c.getAuthTag()]);
    },
  },
  {
    name: 'RSA PKCS#1 v1.5 signature (SHA256_RSA_PKCS)',
    steps: 'sign',
    init: ({ session, key }) => session.signInit('SHA256_RSA_PKCS', key.rsa),
    expected: (data) => nodeSign('sha256', data, RSA),
  },
];

const allActive = (g: HaGroup): boolean => g.status().members.every((m) => m.state.kind === 'active');

describe.each([
  ['SIGKILL', kill, { deadlineMs: 120_000, recovery: { intervalMs: 100 } }],
  ['SIGSTOP past the deadline', stop, { deadlineMs: 400, heartbeatIntervalMs: 100, recovery: { intervalMs: 100 } }],
] as const)('the pinned member host %s between two Updates', (_, fault, extra) => {
  it('digest, HMAC, AES-CBC, AES-GCM and RSA PKCS#1 v1.5 signing complete with the right result and zero errors', async () => {
    const o = await open(extra);
    const failures: string[] = [];
    o.g.on('memberFailed', (e) => failures.push(e.member));
    for (const c of CASES) {
      await until(() => allActive(o.g), 'every member to serve', 30_000);
      const parts = [randomBytes(500), randomBytes(777), randomBytes(300)];
      const pid = primaryPid(o.g);
      const result = await run(c, o, parts, () => fault(pid));
      expect(result, c.name).toEqual(c.expected(Buffer.concat(parts)));
    }
    // Each case failed the member its operation ran on, and nothing else failed.
    expect(failures).toHaveLength(CASES.length);
  }, 120_000);

  it('AES-CBC-PAD, ECB and CTR of any length: taken up from the last block, past the replay bound, encryption and decryption', async () => {
    const o = await open(extra);
    const { session, key } = o;
    const cbc = { name: 'AES_CBC_PAD', iv } as const;
    // Parts larger than the bound, and not whole blocks: nothing of them is kept.
    const data = randomBytes(3 * BOUND + 5);
    const parts = [data.subarray(0, BOUND + 7), data.subarray(BOUND + 7, 2 * BOUND + 1), data.subarray(2 * BOUND + 1)];
    const encrypted = (() => {
      const c = createCipheriv('aes-256-cbc', AES, iv);
      return Buffer.concat([c.update(data), c.final()]);
    })();
    const through = async (update: (p: Buffer) => Promise<Buffer>, final: () => Promise<Buffer>, input: Buffer[]): Promise<Buffer> => {
      const out = [await update(input[0]!), await update(input[1]!)];
      fault(primaryPid(o.g));
      out.push(await update(input[2]!), await final());
      return Buffer.concat(out);
    };
    await session.encryptInit(cbc, key.aes);
    expect(await through((p) => session.encryptUpdate(p), () => session.encryptFinal(), parts)).toEqual(encrypted);

    await until(() => allActive(o.g), 'every member to serve', 30_000);
    // Decryption cut inside a block and right after a whole one (the block CBC-PAD holds back).
    const cut = [encrypted.subarray(0, BOUND + 3), encrypted.subarray(BOUND + 3, 2 * BOUND + 16), encrypted.subarray(2 * BOUND + 16)];
    await session.decryptInit(cbc, key.aes);
    expect(await through((p) => session.decryptUpdate(p), () => session.decryptFinal(), cut)).toEqual(data);

    await until(() => allActive(o.g), 'every member to serve', 30_000);
    const blocks = data.subarray(0, 3 * BOUND);
    const ecb = createCipheriv('aes-256-ecb', AES, null).setAutoPadding(false);
    await session.encryptInit('AES_ECB', key.aes);
    const ecbParts = [blocks.subarray(0, BOUND + 9), blocks.subarray(BOUND + 9, 2 * BOUND + 9), blocks.subarray(2 * BOUND + 9)];
    expect(await through((p) => session.encryptUpdate(p), () => session.encryptFinal(), ecbParts)).toEqual(Buffer.concat([ecb.update(blocks), ecb.final()]));

    await until(() => allActive(o.g), 'every member to serve', 30_000);
    // CTR: its counter moved on by the blocks answered; the partial block fed again and compared.
    const ctr = createCipheriv('aes-256-ctr', AES, iv);
    await session.encryptInit({ name: 'AES_CTR', counterBits: 128, counterBlock: iv }, key.aes);
    expect(await through((p) => session.encryptUpdate(p), () => session.encryptFinal(), parts)).toEqual(Buffer.concat([ctr.update(data), ctr.final()]));

    // A bound of 0 turns takeovers off, this one too (one group at a time: the hooks close the last one).
    await o.g.close();
    const off = await open({ ...extra, multipartReplay: { operationBytes: 0 } });
    await off.session.encryptInit(cbc, off.key.aes);
    await off.session.encryptUpdate(parts[0]!);
    fault(primaryPid(off.g));
    await expect(off.session.encryptUpdate(parts[1]!)).rejects.toMatchObject({ code: 'ERR_OPERATION_RESTART' });
  }, 120_000);

  it('past the replay bound: the typed restart error; an ECDSA operation: the typed restart error', async () => {
    const o = await open(extra);
    const { session, key } = o;
    await session.digestInit('SHA256');
    await session.digestUpdate(randomBytes(BOUND));
    await session.digestUpdate(randomBytes(10)); // past the bound: nothing kept any more
    fault(primaryPid(o.g));
    await expect(session.digestUpdate(randomBytes(10))).rejects.toMatchObject({ code: 'ERR_OPERATION_RESTART', message: expect.stringMatching(/replay bound/) });
    // The operation is over; a new one runs.
    await expect(session.digestFinal()).rejects.toMatchObject({ ckr: 'CKR_OPERATION_NOT_INITIALIZED' });
    await session.digestInit('SHA256');
    await session.digestUpdate(Buffer.from('again'));
    expect(await session.digestFinal()).toEqual(createHash('sha256').update('again').digest());

    await until(() => allActive(o.g), 'every member to serve', 30_000);
    await session.signInit('ECDSA', key.ec);
    fault(primaryPid(o.g));
    await expect(session.signUpdate(randomBytes(32))).rejects.toMatchObject({ code: 'ERR_OPERATION_RESTART', message: expect.stringMatching(/CKM_ECDSA signatures are random/) });
  }, 120_000);
});
