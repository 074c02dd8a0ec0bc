/**
 * Resynchronisation, session-object restore and stray cleanup on real SoftHSM2 members.
 * A member is made unreachable with FaultTransport (its transport closes, the module copy
 * is finalized: its sessions and session objects are gone, its token objects stay), then
 * reconnected with `Member.reconnect` (state `recovering`, new transport, new handles),
 * logged in, and repaired by calling the replication functions directly, as the group's
 * recovery does.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { GroupConfig } from '../../src/group/group-config.js';
import type { Member } from '../../src/member/member.js';
import type { Handle } from '../../src/pkcs11/commands.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { toMechanism } from '../../src/pkcs11/mechanism-table.js';
import { toRawTemplate, type TemplateInput } from '../../src/pkcs11/template-codec.js';
import { readMemberDomain } from '../../src/replication/domain-key.js';
import { findOn } from '../../src/replication/member-objects.js';
import { Journal } from '../../src/replication/journal.js';
import { resyncMember } from '../../src/replication/resync.js';
import { removeHalfMade, removeStrays } from '../../src/replication/strays.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { FaultTransport } from '../helpers/fault-transport.js';
import { ReplyLossTransport } from '../helpers/reply-loss-transport.js';
import { until } from '../helpers/until.js';
import { internalsOf } from '../../src/testing.js';

let bed: Testbed;
let group: HaGroup | undefined;
/** Each member's transport now (a reconnect brings a new one). */
const transports: ReplyLossTransport[] = [];

beforeAll(async () => {
  bed = await createTestbed({ count: 3 });
  await HaGroup.initDomain({ members: bed.memberConfigs() });
});
afterEach(async () => {
  await group?.close();
  group = undefined;
});
afterAll(async () => {
  await bed?.dispose();
});

async function openGroup(extra: Partial<GroupConfig> = {}): Promise<{ group: HaGroup; session: VirtualSession }> {
  group = await HaGroup.open({
    members: bed.memberConfigs(),
    // Recovery by hand only: the test calls each step itself.
    recovery: { maxAttempts: 0 },
    transportFactory: (m) => (transports[m.index] = new ReplyLossTransport(FaultTransport.inProcess(m))),
    ...extra,
  });
  const session = group.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);
  return { group, session };
}

/** Takes a member down: its connection drops, the group fails it. */
function takeDown(g: HaGroup, index: number): void {
  transports[index]!.fault.disconnect();
  expect(internalsOf(g).members[index]!.state.kind).toBe('failed');
}

/** Reconnects a failed member (state `recovering`, new transport), logs it in, reads its domain key. */
async function reconnect(g: HaGroup, index: number): Promise<{ member: Member; domainKey: Handle }> {
  const member = internalsOf(g).members[index]!;
  await member.reconnect();
  expect(member.state.kind).toBe('recovering');
  await member.login(pkcs11js.CKU_USER, bed.tokens[index]!.userPin);
  return { member, domainKey: await domainKeyOf(member) };
}

async function domainKeyOf(member: Member): Promise<Handle> {
  const domain = await readMemberDomain(member);
  if (domain.kind !== 'key') throw new Error(`${member.name} has no domain key`);
  return domain.handle;
}

/** Objects on one member matching a friendly template, with their fingerprints. */
async function onMember(member: Member, template: TemplateInput, domainKey: Handle): Promise<{ handle: Handle; fingerprint: string | undefined }[]> {
  const found = await findOn(member, toRawTemplate(template), domainKey);
  return found.map((f) => ({ handle: f.handle, fingerprint: f.identity.fingerprint }));
}

const AES = (label: string, token = true): TemplateInput => ({ label, valueLen: 32, token, encrypt: true, decrypt: true });

async function decryptOn(member: Member, key: Handle, iv: Buffer, ct: Buffer): Promise<Buffer> {
  return member.run<'decrypt'>((session) => ({ op: 'decrypt', session, mechanism: toMechanism({ name: 'AES_GCM', iv }), key, data: ct }));
}

describe('resyncMember', () => {
  it('settles missed replicas (wrapped keys, public keys, data objects), deletions and attribute changes in journal order', async () => {
    const { group: g, session } = await openGroup();
    const renamed = await session.generateKey('AES_KEY_GEN', AES('rs-old'));
    const gone = await session.generateKey('AES_KEY_GEN', AES('rs-gone'));
    const goneFingerprint = g.describeObject(gone)!.fingerprint;
    takeDown(g, 2);
    const aes = await session.generateKey('AES_KEY_GEN', AES('rs-aes'));
    const ec = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'rs-ec', curve: 'P-256', token: true, verify: true }, { label: 'rs-ec', token: true, sign: true });
    const value = randomBytes(48);
    const data = await session.createObject({ class: 'data', label: 'rs-data', application: 'resync test', value, token: true });
    await session.setAttributes(renamed, { label: 'rs-new' });
    await session.destroyObject(gone);
    const { journal, catalog } = internalsOf(g);
    expect(journal.debts('member-3').map((d) => d.kind)).toEqual(['replica', 'replica', 'replica', 'replica', 'setAttributes', 'destroy']);

    const { member, domainKey } = await reconnect(g, 2);
    const progress: [number, number][] = [];
    const result = await resyncMember({ member, journal, domainKey, catalog, onProgress: (done, total) => progress.push([done, total]) });
    expect(result).toMatchObject({ total: 6, settled: 6, replicated: 4, alreadyPresent: 0, destroyed: 1, updated: 1, unsettled: [] });
    expect(progress).toEqual([1, 2, 3, 4, 5, 6].map((n) => [n, 6]));
    expect(journal.debts('member-3')).toEqual([]);

    // The copies are the group's objects: same fingerprints, and they work.
    for (const h of [aes, ec.publicKey, ec.privateKey, renamed]) {
      const d = g.describeObject(h)!;
      const label = h === renamed ? 'rs-new' : h === aes ? 'rs-aes' : 'rs-ec';
      const copies = (await onMember(member, { label }, domainKey)).map((c) => c.fingerprint);
      expect(copies, label).toContain(d.fingerprint);
    }
    expect(await onMember(member, { label: 'rs-old' }, domainKey)).toEqual([]);
    expect(await onMember(member, { label: 'rs-gone' }, domainKey)).toEqual([]);
    expect(goneFingerprint).toBeDefined();
    const [copy] = await onMember(member, { label: 'rs-aes' }, domainKey);
    const iv = randomBytes(12);
    const pt = randomBytes(100);
    const ct = await session.encrypt({ name: 'AES_GCM', iv }, aes, pt);
    expect(await decryptOn(member, copy!.handle, iv, ct)).toEqual(pt);
    const [priv] = await onMember(member, { label: 'rs-ec', class: 'privateKey' }, domainKey);
    const digest = createHash('sha256').update('resync').digest();
    const signature = await member.run<'sign'>((s) => ({ op: 'sign', session: s, mechanism: toMechanism('ECDSA'), key: priv!.handle, data: digest }));
    expect(await session.verify('ECDSA', ec.publicKey, digest, signature)).toBe(true);
    const [dataCopy] = await onMember(member, { label: 'rs-data' }, domainKey);
    const [read] = await member.run<'getAttributes'>((s) => ({ op: 'getAttributes', session: s, object: dataCopy!.handle, types: [pkcs11js.CKA_VALUE] }));
    expect(read!.value).toEqual(value);
    // Replicas of objects this process knows are linked to them (the member is not used until it rejoins).
    for (const h of [aes, ec.publicKey, ec.privateKey, data]) expect(g.describeObject(h)!.holders).toContain('member-3');
  });

  it('is idempotent: a replica already there is settled, not made twice; a change already applied is applied again harmlessly', async () => {
    const { group: g, session } = await openGroup();
    const key = await session.generateKey('AES_KEY_GEN', AES('id-old'));
    takeDown(g, 2);
    const fresh = await session.generateKey('AES_KEY_GEN', AES('id-aes'));
    await session.setAttributes(key, { label: 'id-new' });
    const { journal } = internalsOf(g);
    const owed = [...journal.debts('member-3')];
    const { member, domainKey } = await reconnect(g, 2);
    expect(await resyncMember({ member, journal, domainKey })).toMatchObject({ settled: 2, replicated: 1, updated: 1 });
    // Nothing left: a second run does nothing.
    expect(await resyncMember({ member, journal, domainKey })).toMatchObject({ total: 0, settled: 0 });
    // As after a crash before the debts were settled: the same debts again.
    for (const d of owed) journal.owe('member-3', d);
    expect(await resyncMember({ member, journal, domainKey })).toMatchObject({ total: 2, settled: 2, replicated: 0, alreadyPresent: 1, updated: 1, unsettled: [] });
    expect((await onMember(member, { label: 'id-aes' }, domainKey)).map((c) => c.fingerprint)).toEqual([g.describeObject(fresh)!.fingerprint]);
    expect((await onMember(member, { label: 'id-new' }, domainKey)).map((c) => c.fingerprint)).toEqual([g.describeObject(key)!.fingerprint]);
  });

  it('a destroy debt never destroys an object with another fingerprint under the same name', async () => {
    const { group: g, session } = await openGroup();
    const key = await session.generateKey('AES_KEY_GEN', AES('fp-key'));
    const original = g.describeObject(key)!.fingerprint;
    takeDown(g, 2);
    await session.destroyObject(key);
    const { journal } = internalsOf(g);
    const { member, domainKey } = await reconnect(g, 2);
    // Another key under the same name, made on that member alone (as another process could).
    await member.run<'generateKey'>((s) => ({
      op: 'generateKey',
      session: s,
      mechanism: toMechanism('AES_KEY_GEN'),
      template: toRawTemplate({ ...AES('fp-key'), extractable: true, sensitive: true }),
    }));
    const before = await onMember(member, { label: 'fp-key' }, domainKey);
    expect(before).toHaveLength(2);
    const other = before.find((c) => c.fingerprint !== original)!;
    const result = await resyncMember({ member, journal, domainKey });
    expect(result).toMatchObject({ settled: 1, destroyed: 1, spared: 1 });
    expect(await onMember(member, { label: 'fp-key' }, domainKey)).toEqual([{ handle: other.handle, fingerprint: other.fingerprint }]);
  });

  it('a key renamed and then destroyed while the member was down is destroyed on it, though it still shows its old name', async () => {
    const { group: g, session } = await openGroup();
    const aes = await session.generateKey('AES_KEY_GEN', AES('rd-v0'));
    const ec = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'rd-ec-v0', curve: 'P-256', token: true, verify: true }, { label: 'rd-ec-v0', token: true, sign: true });
    takeDown(g, 2);
    for (const h of [aes, ec.publicKey, ec.privateKey]) {
      const old = h === aes ? 'rd' : 'rd-ec';
      await session.setAttributes(h, { label: `${old}-v1` });
      await session.setAttributes(h, { label: `${old}-v2` });
      await session.destroyObject(h);
    }
    const { journal, catalog } = internalsOf(g);
    // The missed renames stay owed before the deletion (the deletion names the object as it was last).
    expect(journal.debts('member-3').map((d) => d.kind)).toEqual(Array(3).fill(['setAttributes', 'setAttributes', 'destroy']).flat());
    const { member, domainKey } = await reconnect(g, 2);
    expect(await onMember(member, { label: 'rd-v0' }, domainKey)).toHaveLength(1);
    const result = await resyncMember({ member, journal, domainKey, catalog });
    expect(result).toMatchObject({ settled: 9, destroyed: 3, unsettled: [] });
    for (const label of ['rd-v0', 'rd-v1', 'rd-v2', 'rd-ec-v0', 'rd-ec-v1', 'rd-ec-v2']) expect(await onMember(member, { label }, domainKey), label).toEqual([]);
  });

  it('a rename that fails because its only serving holder failed under it: that member owes the old name back', async () => {
    const { group: g, session } = await openGroup();
    const aes = await session.generateKey('AES_KEY_GEN', AES('ur-v0'));
    takeDown(g, 1);
    takeDown(g, 2);
    // The change runs on member-1, then its connection drops: applied there, but the caller is
    // told it failed (no other member could take it), and the group keeps the old name.
    transports[0]!.loseReplyOf('setAttributes');
    await expect(session.setAttributes(aes, { label: 'ur-v1' })).rejects.toThrow();
    const { journal, catalog } = internalsOf(g);
    const owed = journal.debts('member-1');
    expect(owed.map((d) => d.kind)).toEqual(['setAttributes']);
    expect(owed[0]!.object.search.find((a) => a.type === pkcs11js.CKA_LABEL)?.value.toString()).toBe('ur-v1');
    const { member, domainKey } = await reconnect(g, 0);
    expect(await onMember(member, { label: 'ur-v1' }, domainKey)).toHaveLength(1);
    const result = await resyncMember({ member, journal, domainKey, catalog });
    expect(result.unsettled).toEqual([]);
    // Back under the name the group kept: a deletion recorded under it finds the key.
    expect(await onMember(member, { label: 'ur-v1' }, domainKey)).toEqual([]);
    expect(await onMember(member, { label: 'ur-v0' }, domainKey)).toHaveLength(1);
  });

  it('a destroy debt stays owed while an object under its name cannot be proved to be another one', async () => {
    const { group: g, session } = await openGroup();
    const key = await session.generateKey('AES_KEY_GEN', AES('up-key'));
    takeDown(g, 2);
    await session.destroyObject(key);
    const { journal } = internalsOf(g);
    const { member, domainKey } = await reconnect(g, 2);
    // A key under the same name that cannot be wrapped: it shows other evidence (a check value), not comparable.
    await member.run<'generateKey'>((s) => ({ op: 'generateKey', session: s, mechanism: toMechanism('AES_KEY_GEN'), template: toRawTemplate({ ...AES('up-key'), extractable: false }) }));
    expect(await onMember(member, { label: 'up-key' }, domainKey)).toHaveLength(2);
    const result = await resyncMember({ member, journal, domainKey });
    expect(result).toMatchObject({ settled: 0, destroyed: 1 });
    expect(result.unsettled.map((u) => u.reason)).toEqual([expect.stringContaining('cannot be proved to be another object')]);
    expect(journal.debts('member-3').map((d) => d.kind)).toEqual(['destroy']);
    expect(await onMember(member, { label: 'up-key' }, domainKey)).toHaveLength(1);
  });

  it('a key renamed and destroyed while the member was down is destroyed there after a restart from the journal file', async () => {
    const journalPath = join(bed.dir, 'rename-destroy-journal.json');
    const { group: first, session } = await openGroup({ journalPath });
    const key = await session.generateKey('AES_KEY_GEN', AES('rr-v0'));
    takeDown(first, 2);
    await session.setAttributes(key, { label: 'rr-v1' });
    await session.destroyObject(key);
    await first.close();
    expect((await Journal.open(journalPath)).debts('member-3').map((d) => d.kind)).toEqual(['setAttributes', 'destroy']);
    // The application restarts; member-3 is reachable again: the login settles what it owes.
    const { group: g } = await openGroup({ journalPath });
    expect(g.status().owed).toEqual({});
    const member = internalsOf(g).members[2]!;
    const domainKey = await domainKeyOf(member);
    for (const label of ['rr-v0', 'rr-v1']) expect(await onMember(member, { label }, domainKey), label).toEqual([]);
  });

  it('settles debts read back from the journal file after a restart, by identity', async () => {
    const journalPath = join(bed.dir, 'restart-journal.json');
    const { group: first, session } = await openGroup({ journalPath });
    takeDown(first, 2);
    const key = await session.generateKey('AES_KEY_GEN', AES('rj-aes'));
    const fingerprint = first.describeObject(key)!.fingerprint;
    await first.close();
    expect((await Journal.open(journalPath)).debts('member-3')).toMatchObject([{ kind: 'replica' }]);
    // The application restarts; member-3 is reachable again but still owes the replica.
    const { group: g } = await openGroup({ journalPath });
    const { journal } = internalsOf(g);
    const member = internalsOf(g).members[2]!;
    const domainKey = await domainKeyOf(member);
    // The group settled the debt read back from its journal when openGroup logged in.
    expect(g.status().owed).toEqual({});
    expect((await onMember(member, { label: 'rj-aes' }, domainKey)).map((c) => c.fingerprint)).toEqual([fingerprint]);
    // Again: nothing owed, nothing duplicated.
    expect(await resyncMember({ member, journal, domainKey })).toMatchObject({ total: 0 });
    expect((await onMember(member, { label: 'rj-aes' }, domainKey)).map((c) => c.fingerprint)).toEqual([fingerprint]);
  });
});

/** Every object on the member that does not say it is a token object, with its class, label and id as read. */
/** A session key shaped as SoftHSM leaves a creation killed half-way: a class, no token flag, name or material. */
function makeHalfMadeLookalike(member: Member): Promise<Handle> {
  const A = pkcs11js;
  return member.run<'createObject'>((s) => ({ op: 'createObject', session: s, template: [{ type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_GENERIC_SECRET }, { type: A.CKA_TOKEN, value: false }, { type: A.CKA_VALUE, value: Buffer.alloc(0) }] }));
}

/** A command that runs a while on the member (an RSA-4096 session pair), unnamed. */
function slowGeneration(member: Member): Promise<{ publicKey: Handle; privateKey: Handle }> {
  const A = pkcs11js;
  return member.run<'generateKeyPair'>((s) => ({
    op: 'generateKeyPair',
    session: s,
    mechanism: toMechanism('RSA_PKCS_KEY_PAIR_GEN'),
    publicTemplate: [{ type: A.CKA_TOKEN, value: false }, { type: A.CKA_MODULUS_BITS, value: 4096 }, { type: A.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }],
    privateTemplate: [{ type: A.CKA_TOKEN, value: false }],
  }));
}

async function nonTokenObjects(member: Member): Promise<{ label: string | undefined; cls: number | undefined }[]> {
  const all = await member.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: [] }));
  const tokens = new Set((await member.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: [{ type: pkcs11js.CKA_TOKEN, value: true }] }))).map((h) => h.toString('hex')));
  const out: { label: string | undefined; cls: number | undefined }[] = [];
  for (const h of all.filter((x) => !tokens.has(x.toString('hex')))) {
    const read = await member.run<'getAttributes'>((s) => ({ op: 'getAttributes', session: s, object: h, types: [pkcs11js.CKA_LABEL, pkcs11js.CKA_CLASS] })).catch(() => undefined);
    out.push({ label: read?.[0]?.value?.toString(), cls: read?.[1]?.value?.readUInt32LE(0) });
  }
  return out;
}

/**
 * SIGKILLs a process generating EC token key pairs on `token` until a kill left a half-made
 * object there (SoftHSM writes an object's file, then its defaults, then its template).
 */
async function leaveHalfMadeObject(token: Testbed['tokens'][number], member: Member): Promise<void> {
  const script = `
    const p = require('pkcs11js'); const m = new p.PKCS11(); m.load(${JSON.stringify(token.modulePath)});
    m.C_Initialize({ flags: p.CKF_OS_LOCKING_OK });
    const slot = m.C_GetSlotList(true).find((s) => m.C_GetTokenInfo(s).serialNumber.trim() === ${JSON.stringify(token.serial)});
    const s = m.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION); m.C_Login(s, p.CKU_USER, process.env.PIN);
    process.stdout.write('ready\\n');
    for (let i = 0; ; i++) m.C_GenerateKeyPair(s, { mechanism: p.CKM_EC_KEY_PAIR_GEN },
      [{ type: p.CKA_TOKEN, value: true }, { type: p.CKA_LABEL, value: 'hm' }, { type: p.CKA_EC_PARAMS, value: Buffer.from('06082a8648ce3d030107', 'hex') }],
      [{ type: p.CKA_TOKEN, value: true }, { type: p.CKA_LABEL, value: 'hm' }]);`;
  let kills = 0;
  await until(
    async () => {
      const child = spawn(process.execPath, ['-e', script], { env: { ...process.env, ...token.env, PIN: token.userPin }, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      // The fault is a SIGKILL at a random moment of the creation loop: this delay picks that moment
      // (it waits for nothing). Killing on the child's progress reports was tried: the kill then
      // lands at the same point of each creation and missed the window in CI for 60 s.
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 80));
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      kills++;
      // What the member sees now (SoftHSM reads the token directory again at a search).
      return (await nonTokenObjects(member)).some((o) => o.label === undefined || o.label === '');
    },
    'a kill that leaves a half-made object',
    60_000,
    0,
  );
  expect(kills).toBeGreaterThan(0);
}

describe('the copy a member may have made while it failed under the copying', () => {
  // Found by the chaos run: such a copy of an EC private key showed no key material (it
  // could not be wrapped), so the deletion owed for it found it "unproven", kept it and
  // stayed owed for ever.
  it('is removed once the object is destroyed, even when its material cannot be read', async () => {
    const { group: g, session } = await openGroup();
    takeDown(g, 2);
    const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'rs-leftover', curve: 'P-256', token: true, verify: true }, { label: 'rs-leftover', token: true, sign: true });
    const { journal, catalog } = internalsOf(g);
    // As when member-3 failed while taking its copy of the private key: its outcome is unknown.
    const owed = journal.debts('member-3').find((d) => d.kind === 'replica' && d.object.handle === pair.privateKey)!;
    await journal.settle('member-3', owed);
    await journal.owe('member-3', { ...(owed as Extract<typeof owed, { kind: 'replica' }>), uncertain: true });
    await session.destroyObject(pair.privateKey);
    await session.destroyObject(pair.publicKey);
    expect(journal.debts('member-3')).toEqual([{ kind: 'destroy', object: owed.object, leftover: true }]);

    const { member, domainKey } = await reconnect(g, 2);
    // That copy, made by the member: same name, material it cannot show (not extractable).
    await member.run<'generateKeyPair'>((s) => ({
      op: 'generateKeyPair',
      session: s,
      mechanism: toMechanism('EC_KEY_PAIR_GEN'),
      publicTemplate: toRawTemplate({ label: 'rs-leftover-public', curve: 'P-256', token: true, verify: true }),
      privateTemplate: toRawTemplate({ label: 'rs-leftover', token: true, sign: true, extractable: false }),
    }));
    const copy = await onMember(member, { label: 'rs-leftover', class: 'privateKey' }, domainKey);
    expect(copy).toHaveLength(1);
    expect(copy[0]!.fingerprint).toBeUndefined();

    const result = await resyncMember({ member, journal, domainKey, catalog });
    expect(result).toMatchObject({ settled: 1, destroyed: 1, unsettled: [] });
    expect(await onMember(member, { label: 'rs-leftover' }, domainKey)).toEqual([]);
    for (const f of await onMember(member, { label: 'rs-leftover-public' }, domainKey)) await member.run<'destroyObject'>((s) => ({ op: 'destroyObject', session: s, object: f.handle }));
  });
});

describe('half-made objects', () => {
  it('removeHalfMade removes keys with no token flag, name or material, and keeps every complete object', async () => {
    const { group: g, session } = await openGroup();
    await session.generateKey('AES_KEY_GEN', AES('hm-kept'));
    takeDown(g, 2);
    const { member, domainKey } = await reconnect(g, 2);
    const create = (template: { type: number; value: number | boolean | Buffer }[]) => member.run<'createObject'>((s) => ({ op: 'createObject', session: s, template }));
    const A = pkcs11js;
    // As SoftHSM leaves a key whose creation was killed: defaults only (session objects here, which look the same).
    await create([{ type: A.CKA_CLASS, value: A.CKO_PUBLIC_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_EC }, { type: A.CKA_TOKEN, value: false }, { type: A.CKA_EC_PARAMS, value: Buffer.alloc(0) }, { type: A.CKA_EC_POINT, value: Buffer.alloc(0) }]);
    await create([{ type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_GENERIC_SECRET }, { type: A.CKA_TOKEN, value: false }, { type: A.CKA_VALUE, value: Buffer.alloc(0) }]);
    // Kept: one with a label, complete keys without a name (a session key, a token key).
    await create([{ type: A.CKA_CLASS, value: A.CKO_PUBLIC_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_EC }, { type: A.CKA_TOKEN, value: false }, { type: A.CKA_LABEL, value: Buffer.from('hm-named') }, { type: A.CKA_EC_PARAMS, value: Buffer.alloc(0) }, { type: A.CKA_EC_POINT, value: Buffer.alloc(0) }]);
    for (const token of [false, true]) {
      await member.run<'generateKey'>((s) => ({ op: 'generateKey', session: s, mechanism: toMechanism('AES_KEY_GEN'), template: [{ type: A.CKA_TOKEN, value: token }, { type: A.CKA_VALUE_LEN, value: 32 }] }));
    }
    expect(await nonTokenObjects(member)).toHaveLength(4);
    expect(await removeHalfMade(member, domainKey)).toBe(2);
    expect((await nonTokenObjects(member)).map((o) => o.label).sort()).toEqual(['', 'hm-named']);
    expect(await onMember(member, { label: 'hm-kept' }, domainKey)).toHaveLength(1);
    expect(await onMember(member, { label: '', class: 'secretKey', token: true }, domainKey)).toHaveLength(1);
    expect(await removeHalfMade(member, domainKey)).toBe(0);
  });

  it('removeHalfMade waits for the commands of this process that ran beside its search (what they make looks half made), then removes only the half-made object', async () => {
    const { group: g } = await openGroup();
    takeDown(g, 2);
    const { member, domainKey } = await reconnect(g, 2);
    await makeHalfMadeLookalike(member);
    const slow = slowGeneration(member);
    expect(member.outstanding).toBeGreaterThan(0);
    const order: string[] = [];
    const removing = removeHalfMade(member, domainKey).then((n) => (order.push('removed'), n));
    await slow.then(() => order.push('generated'));
    // The RSA pair (complete, but unnamed: it looked half made while it was being made) stays.
    expect(await removing).toBe(1);
    expect(order).toEqual(['generated', 'removed']);
    expect(await nonTokenObjects(member)).toHaveLength(2);
    expect(await removeHalfMade(member, domainKey)).toBe(0);
  });

  it('removeHalfMade passes over an object destroyed between its search and its check (a session object a replica was made from)', async () => {
    const { group: g } = await openGroup();
    takeDown(g, 2);
    const { member, domainKey } = await reconnect(g, 2);
    const gone = await makeHalfMadeLookalike(member);
    const slow = slowGeneration(member);
    // Its two searches start at once; once they have answered, only the generation runs and the sweep waits for it.
    const removing = removeHalfMade(member, domainKey);
    await until(() => member.outstanding === 1, 'the searches to answer');
    await member.run<'destroyObject'>((s) => ({ op: 'destroyObject', session: s, object: gone }));
    const pair = await slow;
    expect(await removing).toBe(0);
    for (const h of [pair.publicKey, pair.privateKey]) await member.run<'destroyObject'>((s) => ({ op: 'destroyObject', session: s, object: h }));
  });

  it('findOn passes over an object destroyed between its search and the read of its identity', async () => {
    const { group: g, session } = await openGroup();
    await session.generateKey('AES_KEY_GEN', AES('fo-first'));
    await session.generateKey('AES_KEY_GEN', AES('fo-second'));
    const member = internalsOf(g).members[1]!;
    const domainKey = await domainKeyOf(member);
    const search = toRawTemplate({ class: 'secretKey', token: true });
    const all = await findOn(member, search, domainKey);
    expect(all.length).toBeGreaterThanOrEqual(2);
    // The first object's identity read answers as if it had just been destroyed.
    transports[1]!.fault.failNext('getAttributes', { rv: pkcs11js.CKR_OBJECT_HANDLE_INVALID });
    const found = await findOn(member, search, domainKey);
    expect(found).toHaveLength(all.length - 1);
    expect(found.map((f) => f.handle.toString('hex'))).toEqual(all.slice(1).map((f) => f.handle.toString('hex')));
  });

  it('the first login after the group opens removes half-made objects from a member that owes nothing (left there before this group)', async () => {
    const { group: before } = await openGroup();
    const A = pkcs11js;
    const halfMade = [{ type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_GENERIC_SECRET }, { type: A.CKA_TOKEN, value: false }, { type: A.CKA_VALUE, value: Buffer.alloc(0) }];
    await internalsOf(before).members[2]!.run<'createObject'>((s) => ({ op: 'createObject', session: s, template: halfMade }));
    // A second group over the same tokens in this process shares the module instances: it
    // sees that object as a restarted application sees what a killed host left on a token.
    const after = await HaGroup.open({ members: bed.memberConfigs(), recovery: { maxAttempts: 0 }, transport: 'in-process' });
    try {
      const member = internalsOf(after).members[2]!;
      const unnamedSecrets = async () => (await nonTokenObjects(member)).filter((o) => o.label === '' && o.cls === A.CKO_SECRET_KEY).length;
      expect(await unnamedSecrets()).toBe(1);
      expect(after.status().members[2]).toMatchObject({ owed: 0 });
      await after.slot.openSession().login(bed.tokens[0]!.userPin);
      expect(await unnamedSecrets()).toBe(0);
    } finally {
      await after.close();
    }
  });

  it('a member recovered after its host was killed in a key creation keeps no half-made object', async () => {
    const { group: g } = await openGroup();
    takeDown(g, 2);
    const member = internalsOf(g).members[2]!;
    // The member is down: another process stands in for its host, killed in creations until one leaves a half-made key.
    await member.reconnect();
    await member.login(pkcs11js.CKU_USER, bed.tokens[2]!.userPin);
    await leaveHalfMadeObject(bed.tokens[2]!, member);
    member.fail('test: down again');
    expect(await g.recover('member-3')).toBe(true);
    expect((await nonTokenObjects(member)).filter((o) => o.label === undefined || o.label === '')).toEqual([]);
  }, 90_000);
});

describe('session objects on a recovered member', () => {
  it('are made again in a new session of every open virtual session, and go when that session closes', async () => {
    const { group: g, session } = await openGroup();
    const other = g.slot.openSession();
    const aes = await session.generateKey('AES_KEY_GEN', AES('so-aes', false));
    const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'so-ec', curve: 'P-256', token: false, verify: true }, { label: 'so-ec', token: false, sign: true });
    const data = await session.createObject({ class: 'data', label: 'so-data', value: randomBytes(16), token: false });
    const theirs = await other.generateKey('AES_KEY_GEN', AES('so-other', false));
    takeDown(g, 2);
    // One made while the member is down: owed to it.
    const late = await session.generateKey('AES_KEY_GEN', AES('so-late', false));
    const { journal } = internalsOf(g);
    expect(journal.debts('member-3')).toHaveLength(1);

    const { member, domainKey } = await reconnect(g, 2);
    // The old session and its objects went with the old connection.
    expect(await onMember(member, { label: 'so-aes', token: false }, domainKey)).toEqual([]);
    // resyncMember leaves session objects to the sessions.
    expect(await resyncMember({ member, journal, domainKey })).toMatchObject({ total: 0 });
    const keys = new Map<number, Handle>();
    for (const m of internalsOf(g).members) keys.set(m.index, m === member ? domainKey : await domainKeyOf(m));
    const restored = await internalsOf(g).openSessions.restoreSessions(member, { domainKey: (m) => keys.get(m.index) });
    expect(restored).toEqual({ sessions: 2, restored: 6, failed: [] });
    expect(journal.debts('member-3')).toEqual([]);
    for (const h of [aes, pair.publicKey, pair.privateKey, data, theirs, late]) expect(g.describeObject(h)!.holders).toContain('member-3');
    // Again: nothing to do, nothing duplicated.
    expect(await internalsOf(g).openSessions.restoreSessions(member, { domainKey: (m) => keys.get(m.index) })).toEqual({ sessions: 2, restored: 0, failed: [] });

    const [copy] = await onMember(member, { label: 'so-aes', token: false }, domainKey);
    expect(await onMember(member, { label: 'so-aes', token: false }, domainKey)).toHaveLength(1);
    const iv = randomBytes(12);
    const ct = await session.encrypt({ name: 'AES_GCM', iv }, aes, Buffer.from('session objects'));
    expect((await decryptOn(member, copy!.handle, iv, ct)).toString()).toBe('session objects');

    // Back in service, new session objects reach it through the new session.
    member.rejoin();
    const after = await other.generateKey('AES_KEY_GEN', AES('so-after', false));
    expect(g.describeObject(after)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
    // Closing a session ends its objects on the recovered member too.
    await session.close();
    expect(g.slot.openSessions).toBe(1);
    expect(await onMember(member, { label: 'so-aes', token: false }, domainKey)).toEqual([]);
    expect(await onMember(member, { label: 'so-late', token: false }, domainKey)).toEqual([]);
    expect(await onMember(member, { label: 'so-other', token: false }, domainKey)).toHaveLength(1);
  });
});

describe('key creation when the primary fails under it', () => {
  it('a key pair generation whose primary drops is made on the next primary; the dead one owes it and keeps a tentative entry', async () => {
    // Primary-first: the creator writes the token objects itself, so it can leave strays.
    const { group: g, session } = await openGroup({ keyCreation: 'primary-first' });
    expect(g.primary).toBe('member-1');
    transports[0]!.fault.failNext('generateKeyPair', 'disconnect');
    const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'rt-ec', curve: 'P-256', token: true, verify: true }, { label: 'rt-ec', token: true, sign: true });
    expect(g.primary).toBe('member-2');
    for (const h of [pair.publicKey, pair.privateKey]) expect(g.describeObject(h)!.holders).toEqual(['member-2', 'member-3']);
    const { journal } = internalsOf(g);
    expect(journal.tentatives('member-1')).toHaveLength(1);
    expect(journal.tentatives('member-1')[0]!.searches).toHaveLength(2);
    expect(journal.debts('member-1').map((d) => d.kind)).toEqual(['replica', 'replica']);
    // The creation that succeeded left no entry behind.
    expect(journal.tentatives('member-2')).toEqual([]);

    const { member, domainKey } = await reconnect(g, 0);
    const others = await Promise.all([1, 2].map(async (i) => ({ member: internalsOf(g).members[i]!, domainKey: await domainKeyOf(internalsOf(g).members[i]!) })));
    // The command never reached the module: nothing to remove, the entry is settled.
    expect(await removeStrays({ member, domainKey, journal, others })).toMatchObject({ entries: 1, settled: 1, removed: 0, kept: 0 });
    expect(await resyncMember({ member, journal, domainKey })).toMatchObject({ settled: 2, replicated: 2 });
    expect(g.status().owed).toEqual({});
    const digest = createHash('sha256').update('retried').digest();
    const [priv] = await onMember(member, { label: 'rt-ec', class: 'privateKey' }, domainKey);
    const signature = await member.run<'sign'>((s) => ({ op: 'sign', session: s, mechanism: toMechanism('ECDSA'), key: priv!.handle, data: digest }));
    expect(await session.verify('ECDSA', pair.publicKey, digest, signature)).toBe(true);
  });

  it('the copy a killed primary made before it could answer is removed on recovery; objects others hold are never removed', async () => {
    const { group: g, session } = await openGroup({ keyCreation: 'primary-first' });
    // Held by every member, and matching the search of the creation below.
    const held = await session.generateKey('AES_KEY_GEN', AES('st-key'));
    transports[0]!.loseReplyOf('generateKey');
    const key = await session.generateKey('AES_KEY_GEN', AES('st-key'));
    expect(internalsOf(g).members[0]!.state.kind).toBe('failed');
    expect(g.describeObject(key)!.holders).toEqual(['member-2', 'member-3']);
    const { journal } = internalsOf(g);
    expect(journal.tentatives('member-1')).toHaveLength(1);

    const { member, domainKey } = await reconnect(g, 0);
    const groupPrints = [g.describeObject(held)!.fingerprint, g.describeObject(key)!.fingerprint];
    const before = await onMember(member, { label: 'st-key' }, domainKey);
    // The held key and the stray the dead primary made (its own material, nobody else's).
    expect(before).toHaveLength(2);
    const stray = before.find((c) => !groupPrints.includes(c.fingerprint))!;
    expect(stray).toBeDefined();

    // With nobody to compare with, nothing can be proved a stray: nothing goes, the entry stays.
    expect(await removeStrays({ member, domainKey, journal, others: [] })).toMatchObject({ removed: 0, settled: 0, unsettled: [expect.anything()] });
    expect(await onMember(member, { label: 'st-key' }, domainKey)).toHaveLength(2);

    const others = await Promise.all([1, 2].map(async (i) => ({ member: internalsOf(g).members[i]!, domainKey: await domainKeyOf(internalsOf(g).members[i]!) })));
    expect(await removeStrays({ member, domainKey, journal, others })).toMatchObject({ entries: 1, settled: 1, removed: 1, kept: 1, unsettled: [] });
    expect(journal.tentatives('member-1')).toEqual([]);
    expect(await resyncMember({ member, journal, domainKey })).toMatchObject({ settled: 1, replicated: 1 });
    const after = (await onMember(member, { label: 'st-key' }, domainKey)).map((c) => c.fingerprint).sort();
    expect(after).toEqual([...groupPrints].sort());
    expect(g.status().owed).toEqual({});
  });

  it('parallel creation: a primary killed after making the staged key leaves no token object and no tentative entry; the call succeeds on the next primary', async () => {
    const { group: g, session } = await openGroup();
    transports[0]!.loseReplyOf('generateKeyPair');
    const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'pc-ec', curve: 'P-256', token: true, verify: true }, { label: 'pc-ec', token: true, sign: true });
    expect(internalsOf(g).members[0]!.state.kind).toBe('failed');
    expect(g.primary).toBe('member-2');
    for (const h of [pair.publicKey, pair.privateKey]) expect(g.describeObject(h)!.holders).toEqual(['member-2', 'member-3']);
    const { journal } = internalsOf(g);
    // Nothing the dead primary made can be on its token: no entry to settle.
    expect(journal.tentatives('member-1')).toEqual([]);
    expect(journal.tentatives('member-2')).toEqual([]);
    expect(journal.debts('member-1').map((d) => d.kind)).toEqual(['replica', 'replica']);

    const { member, domainKey } = await reconnect(g, 0);
    expect(await onMember(member, { label: 'pc-ec' }, domainKey)).toEqual([]);
    expect(await resyncMember({ member, journal, domainKey })).toMatchObject({ settled: 2, replicated: 2 });
    const digest = createHash('sha256').update('parallel').digest();
    const [priv] = await onMember(member, { label: 'pc-ec', class: 'privateKey' }, domainKey);
    const signature = await member.run<'sign'>((s) => ({ op: 'sign', session: s, mechanism: toMechanism('ECDSA'), key: priv!.handle, data: digest }));
    expect(await session.verify('ECDSA', pair.publicKey, digest, signature)).toBe(true);
  });

  it('parallel creation leaves only token copies, the primary\'s included; primary-first keeps CKA_LOCAL on the primary\'s copy', async () => {
    const localOf = async (g: HaGroup, label: string): Promise<boolean[]> =>
      Promise.all(
        internalsOf(g).members.map(async (m) => {
          const domainKey = await domainKeyOf(m);
          const [found] = await onMember(m, { label, class: 'privateKey' }, domainKey);
          const [local] = await m.run<'getAttributes'>((s) => ({ op: 'getAttributes', session: s, object: found!.handle, types: [pkcs11js.CKA_LOCAL] }));
          return local!.value?.[0] === 1;
        }),
      );
    const staged = await openGroup();
    const pair = await staged.session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'pc-st', curve: 'P-256', token: true, verify: true }, { label: 'pc-st', token: true, sign: true });
    for (const h of [pair.publicKey, pair.privateKey]) expect(staged.group.describeObject(h)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
    // The staged session objects are gone from the primary.
    const sessionObjects = await internalsOf(staged.group).members[0]!.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: toRawTemplate({ label: 'pc-st', token: false }) }));
    expect(sessionObjects).toEqual([]);
    expect(await localOf(staged.group, 'pc-st')).toEqual([false, false, false]);
    // CKA_DESTROYABLE=false is never staged: the primary made it itself.
    await staged.session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'pc-nd', curve: 'P-256', token: true, verify: true }, { label: 'pc-nd', token: true, sign: true, destroyable: false });
    expect(await localOf(staged.group, 'pc-nd')).toEqual([true, false, false]);
    await staged.group.close();

    const direct = await openGroup({ keyCreation: 'primary-first' });
    await direct.session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'pc-pf', curve: 'P-256', token: true, verify: true }, { label: 'pc-pf', token: true, sign: true });
    expect(await localOf(direct.group, 'pc-pf')).toEqual([true, false, false]);
  });

  it('a key only the recovered member holds, that the others owe, is not a stray', async () => {
    const { group: g, session } = await openGroup({ minReplicas: 1, keyCreation: 'primary-first' });
    takeDown(g, 1);
    takeDown(g, 2);
    // Acknowledged with one copy: members 2 and 3 owe it.
    const only = await session.generateKey('AES_KEY_GEN', AES('ow-key'));
    expect(g.describeObject(only)!.holders).toEqual(['member-1']);
    // They come back without settling it (still owed), and serve.
    for (const i of [1, 2]) (await reconnect(g, i)).member.rejoin();
    const { journal } = internalsOf(g);
    expect(g.status().owed).toEqual({ 'member-2': 1, 'member-3': 1 });
    // member-1 dies making another key of that name after the module made it.
    transports[0]!.loseReplyOf('generateKey');
    const retried = await session.generateKey('AES_KEY_GEN', AES('ow-key'));
    expect(g.describeObject(retried)!.holders).toEqual(['member-2', 'member-3']);
    const { member, domainKey } = await reconnect(g, 0);
    expect(await onMember(member, { label: 'ow-key' }, domainKey)).toHaveLength(2);
    const others = await Promise.all([1, 2].map(async (i) => ({ member: internalsOf(g).members[i]!, domainKey: await domainKeyOf(internalsOf(g).members[i]!) })));
    // The stray goes; the acknowledged key stays although no serving member holds it yet.
    expect(await removeStrays({ member, domainKey, journal, others })).toMatchObject({ removed: 1, kept: 1, settled: 1 });
    expect((await onMember(member, { label: 'ow-key' }, domainKey)).map((c) => c.fingerprint)).toEqual([g.describeObject(only)!.fingerprint]);
  });
});

/** A token X.509 certificate object (SoftHSM does not parse CKA_VALUE). */
function certificate(label: string) {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_CERTIFICATE },
    { type: pkcs11js.CKA_CERTIFICATE_TYPE, value: pkcs11js.CKC_X_509 },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_SUBJECT, value: Buffer.from('3000', 'hex') },
    { type: pkcs11js.CKA_VALUE, value: Buffer.from('3003020100', 'hex') },
  ];
}

/**
 * Staged creation (keyCreation: 'parallel') on its edges, from a review: objects the
 * replica template cannot make, raw boolean attributes, and copies whose outcome is
 * unknown when a creation is rolled back. The controls show the primary-first behaviour.
 */
describe('staged creation and rollback', () => {
  it('control: primary-first creates a token certificate (the primary holds it, the others owe copies they cannot make)', async () => {
    const { group: g, session } = await openGroup({ keyCreation: 'primary-first' });
    const cert = await session.createObject(certificate('rv-cert-pf'));
    expect(g.describeObject(cert)!.holders).toEqual(['member-1']);
  });

  it('a token certificate is made primary-first under the default keyCreation (the replica template cannot make one, so it is never staged)', async () => {
    const { group: g, session } = await openGroup();
    const cert = await session.createObject(certificate('rv-cert-st'));
    expect(g.describeObject(cert)!.holders).toContain('member-1');
  });

  it('a raw CKA_DESTROYABLE=false (a Buffer [0]) is not staged: no session object stays on the creator', async () => {
    const { group: g, session } = await openGroup();
    const template = [
      ...toRawTemplate({ label: 'rv-nd-raw', valueLen: 32, token: true, encrypt: true, decrypt: true }),
      { type: pkcs11js.CKA_DESTROYABLE, value: Buffer.from([0]) },
    ];
    await session.generateKey('AES_KEY_GEN', template);
    const left = await internalsOf(g).members[0]!.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: toRawTemplate({ label: 'rv-nd-raw', token: false }) }));
    expect(left).toEqual([]);
  });

  it('a creator that writes its own token copy and loses the answer, in a creation rolled back for minReplicas, owes its deletion: after recovery the removed key is not offered', async () => {
    const { group: g, session } = await openGroup({ minReplicas: 2 });
    // member-3 is down: 2 serve, minReplicas 2 is met before creating.
    transports[2]!.fault.disconnect();
    expect(internalsOf(g).members[2]!.state.kind).toBe('failed');
    // The creator's (member-1) own token copy is its only unwrapKey in a staged creation.
    transports[0]!.loseReplyOf('unwrapKey');
    await expect(session.generateKey('AES_KEY_GEN', { label: 'rv-ghost', valueLen: 32, token: true, encrypt: true, decrypt: true })).rejects.toThrow(/fewer than minReplicas/);
    expect(internalsOf(g).members[0]!.state.kind).toBe('failed');
    expect(internalsOf(g).journal.tentatives('member-1')).toEqual([]);
    // The group said the object was removed again; the creator comes back.
    expect(await g.recover('member-1')).toBe(true);
    expect(await session.findObjects({ label: 'rv-ghost' })).toEqual([]);
  });

  it('control: primary-first creates a CKA_MODIFIABLE=false token key (the primary holds it; the replicas fail with CKR_ATTRIBUTE_READ_ONLY and stay owed)', async () => {
    const { group: g, session } = await openGroup({ keyCreation: 'primary-first' });
    const key = await session.generateKey('AES_KEY_GEN', { label: 'rv-nm-pf', valueLen: 32, token: true, encrypt: true, modifiable: false });
    expect(g.describeObject(key)!.holders).toEqual(['member-1']);
  });

  it('a CKA_MODIFIABLE=false token key is made primary-first under the default keyCreation (SoftHSM refuses it in an unwrap template)', async () => {
    const { group: g, session } = await openGroup();
    const key = await session.generateKey('AES_KEY_GEN', { label: 'rv-nm', valueLen: 32, token: true, encrypt: true, modifiable: false });
    expect(g.describeObject(key)!.holders).toContain('member-1');
  });

  it('a replica target that writes its copy and loses the answer owes its deletion when the creation is rolled back for minReplicas (primary-first)', async () => {
    const { group: g, session } = await openGroup({ minReplicas: 3, keyCreation: 'primary-first' });
    transports[1]!.loseReplyOf('unwrapKey');
    transports[2]!.fault.failNext('unwrapKey', { rv: pkcs11js.CKR_DEVICE_MEMORY });
    await expect(session.generateKey('AES_KEY_GEN', { label: 'rv-ghost-pf', valueLen: 32, token: true, encrypt: true, decrypt: true })).rejects.toThrow(/fewer than minReplicas/);
    expect(internalsOf(g).members[1]!.state.kind).toBe('failed');
    expect(await g.recover('member-2')).toBe(true);
    expect(await session.findObjects({ label: 'rv-ghost-pf' })).toEqual([]);
  });

  it('a staged creation whose creator refuses its own copy is made again primary-first, and leaves no staged object behind', async () => {
    const { group: g, session } = await openGroup();
    // The creator's only unwrap in a staged creation is its own copy.
    transports[0]!.fault.failNext('unwrapKey', { rv: pkcs11js.CKR_TEMPLATE_INCONSISTENT });
    const key = await session.generateKey('AES_KEY_GEN', { label: 'rv-fallback', valueLen: 32, token: true, encrypt: true, decrypt: true });
    expect(g.describeObject(key)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
    expect(g.status().owed).toEqual({});
    // Primary-first: the creator made the token object itself (CKA_LOCAL), the others copied it.
    const local = await Promise.all(
      internalsOf(g).members.map(async (m) => {
        const [found] = await m.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: toRawTemplate({ label: 'rv-fallback', token: true }) }));
        const [attribute] = await m.run<'getAttributes'>((s) => ({ op: 'getAttributes', session: s, object: found!, types: [pkcs11js.CKA_LOCAL] }));
        return attribute!.value?.[0] === 1;
      }),
    );
    expect(local).toEqual([true, false, false]);
    const left = await internalsOf(g).members[0]!.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: toRawTemplate({ label: 'rv-fallback', token: false }) }));
    expect(left).toEqual([]);
    expect(await session.findObjects({ label: 'rv-fallback' })).toEqual([key]);
  });
});
