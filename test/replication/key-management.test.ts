import { createHash, createPublicKey, randomBytes, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup, type GroupConfig } from '../../src/index.js';
import type { ResolvedMemberConfig } from '../../src/group/group-config.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { InProcessTransport } from '../../src/transport/in-process-transport.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { RecordingTransport, containsBytes, type Exchange } from '../helpers/recording-transport.js';
import { internalsOf } from '../../src/testing.js';
import { faultGroups, states } from '../helpers/fault-group.js';
import { until } from '../helpers/until.js';

const inProcess = (m: ResolvedMemberConfig) =>
  new InProcessTransport({ member: m.name, modulePath: m.modulePath, moduleEnv: m.moduleEnv, token: m.token, threads: m.threads, configPath: m.path });

const served = (group: HaGroup): number[] => group.status().members.map((m) => m.served);
const delta = (after: number[], before: number[]): number[] => after.map((v, i) => v - before[i]!);

function ecPublicKey(ecPoint: Buffer): KeyObject {
  // SubjectPublicKeyInfo for P-256 around the uncompressed point (CKA_EC_POINT is a DER OCTET STRING).
  const point = ecPoint[0] === 0x04 && ecPoint[1] === 0x41 ? ecPoint.subarray(2) : ecPoint;
  return createPublicKey({ key: Buffer.concat([Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'), point]), format: 'der', type: 'spki' });
}

function rsaPublicKey(modulus: Buffer, exponent: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'RSA', n: modulus.toString('base64url'), e: exponent.toString('base64url') }, format: 'jwk' });
}

describe('key management replicated under the domain key (3 active + 1 standby SoftHSM2 members)', () => {
  let bed: Testbed;
  let config: GroupConfig;
  let group: HaGroup;
  let session: VirtualSession;
  const log: Exchange[] = [];
  const roles = ['active', 'active', 'active', 'standby'] as const;

  const open = async (extra: Partial<GroupConfig> = {}): Promise<HaGroup> => {
    const g = await HaGroup.open({ ...config, ...extra });
    return g;
  };

  beforeAll(async () => {
    bed = await createTestbed({ count: 4 });
    config = { members: bed.memberConfigs({ roles: [...roles] }), transportFactory: (m) => new RecordingTransport(m.name, inProcess(m), log) };
    const init = await HaGroup.initDomain(config);
    expect(init).toMatchObject({ created: true, source: 'member-1', joined: ['member-2', 'member-3', 'member-4'], skipped: [] });
    expect(init.checkValue).toMatch(/^[0-9a-f]{16}$/);
    group = await open();
    session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
  });
  afterAll(async () => {
    await group?.close();
    await bed?.dispose();
  });

  it('opens with every member in the domain', () => {
    const status = group.status();
    expect(status.domain).toMatch(/^[0-9a-f]{16}$/);
    expect(status.members.map((m) => m.state.kind)).toEqual([...roles]);
  });

  it('a second init finds the domain complete and changes nothing', async () => {
    const again = await HaGroup.initDomain(config);
    expect(again).toMatchObject({ created: false, joined: [], checkValue: group.status().domain });
  });

  it('AES-256: generated on the primary, present on all four, decrypts on each member what another encrypted', async () => {
    const key = await session.generateKey('AES_KEY_GEN', { label: 'km-aes', valueLen: 32, token: true, encrypt: true, decrypt: true });
    expect(group.describeObject(key)?.holders).toEqual(['member-1', 'member-2', 'member-3', 'member-4']);
    const attrs = await session.getAttributes(key, ['extractable', 'wrapWithTrusted', 'sensitive', 'token']);
    expect(attrs).toMatchObject({ extractable: true, wrapWithTrusted: true, sensitive: true, token: true });
    const before = served(group);
    const iv = randomBytes(12);
    const pt = randomBytes(1024);
    const ct = await session.encrypt({ name: 'AES_GCM', iv }, key, pt);
    for (let i = 0; i < 3; i++) expect(await session.decrypt({ name: 'AES_GCM', iv }, key, ct)).toEqual(pt);
    expect(delta(served(group), before).slice(0, 3).every((n) => n >= 1)).toBe(true);
  });

  it('HMAC: every member computes the same MAC', async () => {
    const key = await session.generateKey('GENERIC_SECRET_KEY_GEN', { label: 'km-hmac', valueLen: 32, token: true, sign: true, verify: true, keyType: 'genericSecret' });
    const data = randomBytes(512);
    const macs = [];
    for (let i = 0; i < 3; i++) macs.push((await session.sign('SHA256_HMAC', key, data)).toString('hex'));
    expect(new Set(macs).size).toBe(1);
  });

  it('EC P-256 and RSA-2048 pairs: signatures from each member verify with the public key', async () => {
    const ec = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'km-ec', curve: 'P-256', token: true, verify: true }, { label: 'km-ec', token: true, sign: true });
    const rsa = await session.generateKeyPair(
      'RSA_PKCS_KEY_PAIR_GEN',
      { label: 'km-rsa', modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), token: true, verify: true },
      { label: 'km-rsa', token: true, sign: true },
    );
    for (const h of [ec.publicKey, ec.privateKey, rsa.publicKey, rsa.privateKey]) expect(group.describeObject(h)?.holders).toHaveLength(4);
    const { ecPoint } = await session.getAttributes(ec.publicKey, ['ecPoint']);
    const { modulus, publicExponent } = await session.getAttributes(rsa.publicKey, ['modulus', 'publicExponent']);
    const ecKey = ecPublicKey(ecPoint as Buffer);
    const rsaKey = rsaPublicKey(modulus as Buffer, publicExponent as Buffer);
    const before = served(group);
    for (let i = 0; i < 3; i++) {
      const msg = randomBytes(100);
      const sig = await session.sign('ECDSA', ec.privateKey, createHash('sha256').update(msg).digest());
      expect(cryptoVerify('sha256', msg, { key: ecKey, dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
      const rsaSig = await session.sign('SHA256_RSA_PKCS', rsa.privateKey, msg);
      expect(cryptoVerify('sha256', msg, rsaKey, rsaSig)).toBe(true);
      expect(await session.verify('SHA256_RSA_PKCS', rsa.publicKey, msg, rsaSig)).toBe(true);
    }
    expect(delta(served(group), before).slice(0, 3).every((n) => n >= 2)).toBe(true);
  });

  it('the standby holds working copies too', async () => {
    const [aes] = await session.findObjects({ label: 'km-aes' });
    const iv = randomBytes(12);
    const ct = await session.encrypt({ name: 'AES_GCM', iv }, aes!, Buffer.from('standby'));
    // A group of the standby alone, as an active member, decrypts it.
    const standbyOnly = await HaGroup.open({ members: [{ ...bed.memberConfigs()[3]!, role: 'active' }] });
    try {
      const s = standbyOnly.slot.openSession();
      await s.login(bed.tokens[0]!.userPin);
      const [copy] = await s.findObjects({ label: 'km-aes' });
      expect((await s.decrypt({ name: 'AES_GCM', iv }, copy!, ct)).toString()).toBe('standby');
    } finally {
      await standbyOnly.close();
    }
  });

  it('token keys survive closing and reopening the group, as one object with the same identity', async () => {
    const names = ['km-aes', 'km-hmac', 'km-ec', 'km-rsa'];
    const before = new Map<string, (string | undefined)[]>();
    for (const label of names) before.set(label, (await session.findObjects({ label })).map((h) => group.describeObject(h)?.fingerprint));
    await group.close();
    group = await open();
    session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
    for (const label of names) {
      const found = await session.findObjects({ label });
      expect(found.length, label).toBe(before.get(label)!.length);
      for (const h of found) {
        const d = group.describeObject(h)!;
        expect(d.holders, label).toHaveLength(4);
        expect(before.get(label)).toContain(d.fingerprint);
        expect(d.fingerprint, label).toBeDefined();
      }
    }
  });

  it('detects two different keys under one label and id', async () => {
    // Same label and id, different material: on members 1-2 one key, on 3-4 another.
    const a = await session.generateKey('AES_KEY_GEN', { label: 'km-twin', id: Buffer.from('twin'), valueLen: 32, token: true, encrypt: true });
    const b = await session.generateKey('AES_KEY_GEN', { label: 'km-twin', id: Buffer.from('twin'), valueLen: 32, token: true, encrypt: true });
    expect(a).not.toBe(b);
    expect(group.describeObject(a)?.fingerprint).not.toBe(group.describeObject(b)?.fingerprint);
    await group.close();
    group = await open();
    const conflicts: unknown[] = [];
    group.on('identityConflict', (e) => conflicts.push(e));
    session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
    const found = await session.findObjects({ label: 'km-twin' });
    // Two objects, each on all four members: told apart by their material, not merged.
    expect(found).toHaveLength(2);
    for (const h of found) expect(group.describeObject(h)?.holders).toHaveLength(4);
    expect(conflicts.length).toBeGreaterThan(0);
  });

  it('an attribute change is seen on every member, and a destroyed key is gone from every member', async () => {
    const key = await session.generateKey('AES_KEY_GEN', { label: 'km-old', valueLen: 32, token: true, encrypt: true, decrypt: true });
    await session.setAttributes(key, { label: 'km-new' });
    expect(await session.findObjects({ label: 'km-old' })).toEqual([]);
    expect(await session.findObjects({ label: 'km-new' })).toEqual([key]);
    const fresh = await open();
    try {
      const s = fresh.slot.openSession();
      await s.login(bed.tokens[0]!.userPin);
      const [h] = await s.findObjects({ label: 'km-new' });
      expect(fresh.describeObject(h!)?.holders).toHaveLength(4);
      expect(await s.findObjects({ label: 'km-old' })).toEqual([]);
    } finally {
      await fresh.close();
    }
    await session.destroyObject(key);
    expect(await session.findObjects({ label: 'km-new' })).toEqual([]);
    await expect(session.encrypt({ name: 'AES_GCM', iv: randomBytes(12) }, key, Buffer.alloc(4))).rejects.toMatchObject({ code: 'ERR_INVALID_HANDLE' });
  });

  it('session objects are replicated and disappear with the session', async () => {
    const s = group.slot.openSession();
    const key = await s.generateKey('AES_KEY_GEN', { label: 'km-session', valueLen: 32, token: false, encrypt: true, decrypt: true });
    expect(group.describeObject(key)?.holders).toHaveLength(4);
    const iv = randomBytes(12);
    const ct = await s.encrypt({ name: 'AES_GCM', iv }, key, Buffer.from('x'));
    for (let i = 0; i < 3; i++) expect((await s.decrypt({ name: 'AES_GCM', iv }, key, ct)).toString()).toBe('x');
    expect(await session.findObjects({ label: 'km-session' })).toEqual([key]);
    await s.close();
    expect(group.describeObject(key)).toBeUndefined();
    expect(await session.findObjects({ label: 'km-session' })).toEqual([]);
  });

  it('session key pairs made at once through one virtual session use several of its member sessions, all work, and all go with the session', async () => {
    const s = group.slot.openSession();
    const before = log.length;
    const pairs = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        s.generateKeyPair('EC_KEY_PAIR_GEN', { label: `km-burst-${i}`, curve: 'P-256', token: false, verify: true }, { label: `km-burst-${i}`, token: false, sign: true }),
      ),
    );
    // The pairs were made (and copied) in more than one of the session's own sessions per member.
    const made = log.slice(before).filter((e) => e.command.op === 'generateKeyPair' || e.command.op === 'unwrapKey');
    for (const name of ['member-1', 'member-2']) {
      const sessions = new Set(made.filter((e) => e.member === name).map((e) => (e.command as { session: Buffer }).session.toString('hex')));
      expect(sessions.size, name).toBeGreaterThan(1);
    }
    const msg = Buffer.from('burst');
    const digest = createHash('sha256').update(msg).digest();
    for (const pair of pairs) {
      expect(group.describeObject(pair.privateKey)?.holders).toHaveLength(4);
      const { ecPoint } = await s.getAttributes(pair.publicKey, ['ecPoint']);
      for (let i = 0; i < 4; i++) {
        const sig = await s.sign('ECDSA', pair.privateKey, digest);
        expect(cryptoVerify('sha256', msg, { key: ecPublicKey(ecPoint as Buffer), dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
      }
    }
    await s.close();
    for (const pair of pairs) expect(group.describeObject(pair.privateKey)).toBeUndefined();
    expect(await session.findObjects({ label: 'km-burst-0' })).toEqual([]);
    expect(await session.findObjects({ label: 'km-burst-7' })).toEqual([]);
  });

  it('CKA_EXTRACTABLE=false becomes "extractable only under the trusted domain key"; a non-trusted key cannot wrap it out', async () => {
    const key = await session.generateKey('AES_KEY_GEN', { label: 'km-unx', valueLen: 32, token: false, encrypt: true, extractable: false });
    expect(await session.getAttributes(key, ['extractable', 'wrapWithTrusted'])).toMatchObject({ extractable: true, wrapWithTrusted: true });
    const wrapper = await session.generateKey('AES_KEY_GEN', { label: 'km-wrapper', valueLen: 32, token: false, wrap: true });
    for (let i = 0; i < 4; i++) {
      await expect(session.wrapKey('AES_KEY_WRAP_PAD', wrapper, key)).rejects.toMatchObject({ code: 'ERR_PKCS11', ckr: 'CKR_KEY_NOT_WRAPPABLE' });
    }
    expect(group.status().members.map((m) => m.state.kind)).toEqual([...roles]);
    const strict = await open({ unextractableKeys: 'reject' });
    try {
      const s = strict.slot.openSession();
      await expect(s.generateKey('AES_KEY_GEN', { valueLen: 32, extractable: false })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    } finally {
      await strict.close();
    }
  });

  it('the bytes of an imported key never pass between members, nor into events, status or errors', async () => {
    const secret = randomBytes(32);
    const events: unknown[] = [];
    for (const name of ['memberStateChanged', 'replicaMissed', 'identityConflict', 'primaryChanged'] as const) group.on(name, (e: unknown) => events.push(e));
    log.length = 0;
    const key = await session.createObject({ class: 'secretKey', keyType: 'aes', value: secret, label: 'km-imported', token: true, encrypt: true, decrypt: true });
    expect(group.describeObject(key)?.holders).toHaveLength(4);
    const primary = group.status().primary;
    const toPrimary = log.filter((e) => e.member === primary && e.command.op === 'createObject');
    expect(toPrimary).toHaveLength(1);
    expect(containsBytes(toPrimary[0]!.command, secret)).toBe(true); // the test can see it where it is
    const elsewhere = log.filter((e) => e !== toPrimary[0]);
    expect(elsewhere.length).toBeGreaterThan(3);
    for (const e of elsewhere) expect(containsBytes(e.command, secret), `${e.member} ${e.command.op}`).toBe(false);
    for (const e of log) expect(containsBytes([e.result, e.error], secret)).toBe(false);
    expect(containsBytes(events, secret)).toBe(false);
    expect(inspect(group.status(), { depth: 10 }).includes(secret.toString('hex'))).toBe(false);
    // A failing import's error does not carry the value either.
    // (A user may not set CKA_TRUSTED: the primary refuses.)
    const error = await session.createObject({ class: 'secretKey', keyType: 'aes', value: secret, token: false, trusted: true }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_PKCS11', ckr: 'CKR_ATTRIBUTE_READ_ONLY' });
    expect(containsBytes(error, secret)).toBe(false);
    group.removeAllListeners();
  });
});

describe('replication when a member cannot be reached', () => {
  let bed: Testbed;
  let group: HaGroup;
  let session: VirtualSession;

  beforeAll(async () => {
    bed = await createTestbed({ count: 3 });
    await HaGroup.initDomain({ members: bed.memberConfigs() });
  });
  afterAll(async () => {
    await group?.close();
    await bed?.dispose();
  });

  it('records a key created while a member is down as owed to it, and keeps the member out of that key', async () => {
    group = await HaGroup.open({ members: bed.memberConfigs(), minReplicas: 2 });
    session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
    const missed: { member: string; object: number }[] = [];
    group.on('replicaMissed', (e) => missed.push(e));
    // The third member's connection goes away under the group.
    await internalsOf(group).members[2]!.transport.close();
    const key = await session.generateKey('AES_KEY_GEN', { label: 'down-aes', valueLen: 32, token: true, encrypt: true, decrypt: true });
    expect(group.status().members[2]!.state.kind).toBe('failed');
    expect(group.describeObject(key)?.holders).toEqual(['member-1', 'member-2']);
    expect(group.status().owed).toEqual({ 'member-3': 1 });
    expect(missed).toEqual([expect.objectContaining({ member: 'member-3', object: key })]);
    // Two copies meet minReplicas 2; a group asking for 3 refuses and creates nothing.
    const strict = await HaGroup.open({ members: bed.memberConfigs().slice(0, 2), minReplicas: 2 });
    await strict.close();
    await expect(HaGroup.open({ members: bed.memberConfigs(), minReplicas: 4 })).rejects.toMatchObject({ code: 'ERR_CONFIG' });
  });

  it('minReplicas refuses a creation that would leave fewer copies, and leaves nothing behind', async () => {
    const g = await HaGroup.open({ members: bed.memberConfigs(), minReplicas: 3 });
    try {
      const s = g.slot.openSession();
      await s.login(bed.tokens[0]!.userPin);
      await internalsOf(g).members[1]!.transport.close();
      await internalsOf(g).members[2]!.transport.close();
      // Members learn they are gone on first use; the first attempt fails them, the next one is refused up front.
      const first = await s.generateKey('AES_KEY_GEN', { label: 'few-aes', valueLen: 32, token: true, encrypt: true }).catch((e: unknown) => e);
      expect(first).toMatchObject({ code: 'ERR_REPLICATION' });
      await expect(s.generateKey('AES_KEY_GEN', { label: 'few-aes', valueLen: 32, token: true, encrypt: true })).rejects.toMatchObject({ code: 'ERR_REPLICATION' });
      expect(await s.findObjects({ label: 'few-aes' })).toEqual([]);
      expect(g.status().owed).toEqual({});
    } finally {
      await g.close();
    }
  });
});

describe('deletions and attribute changes a member that is down will owe: recorded before they run', () => {
  let bed: Testbed;
  let dir: string;

  beforeAll(async () => {
    bed = await createTestbed({ count: 3 });
    await HaGroup.initDomain({ members: bed.memberConfigs() });
    dir = mkdtempSync(join(tmpdir(), 'owed-ahead-'));
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await bed?.dispose();
  });

  it('a deletion or a rename the journal cannot record fails with ERR_JOURNAL and changes nothing; a refused deletion leaves the replica owed', async () => {
    const journalDir = join(dir, 'journal');
    const g = await HaGroup.open({ members: bed.memberConfigs(), minReplicas: 2, journalPath: join(journalDir, 'journal.json') });
    try {
      const s = g.slot.openSession();
      await s.login(bed.tokens[0]!.userPin);
      await internalsOf(g).members[2]!.transport.close();
      const aes = { valueLen: 32, token: true, encrypt: true, decrypt: true } as const;
      const key = await s.generateKey('AES_KEY_GEN', { label: 'ahead-aes', ...aes });
      const kept = await s.generateKey('AES_KEY_GEN', { label: 'ahead-kept', ...aes, destroyable: false });
      expect(g.status().members[2]!.state.kind).toBe('failed');
      // (In any order: a withdrawn deletion owes the replica again after the others.)
      const owed = (): string[] => internalsOf(g).journal.debts('member-3').map((d) => `${d.kind}:${d.object.handle}`).sort();
      expect(owed()).toEqual([`replica:${key}`, `replica:${kept}`].sort());

      // A refused deletion (CKA_DESTROYABLE false): member-3 still owes the key's replica, not its deletion.
      await expect(s.destroyObject(kept)).rejects.toMatchObject({ code: 'ERR_PKCS11', ckr: 'CKR_ACTION_PROHIBITED' });
      expect(owed()).toEqual([`replica:${key}`, `replica:${kept}`].sort());

      // The journal's directory becomes a file: every write fails, as on a full or broken disk.
      rmSync(journalDir, { recursive: true });
      writeFileSync(journalDir, '');
      await expect(s.destroyObject(key)).rejects.toMatchObject({ code: 'ERR_JOURNAL' });
      await expect(s.setAttributes(key, { label: 'ahead-renamed' })).rejects.toMatchObject({ code: 'ERR_JOURNAL' });
      // Nothing was applied: the key is where it was, under its name, and works.
      expect(g.describeObject(key)?.holders).toEqual(['member-1', 'member-2']);
      expect(await s.findObjects({ label: 'ahead-aes' })).toEqual([key]);
      expect(await s.findObjects({ label: 'ahead-renamed' })).toEqual([]);
      const iv = Buffer.alloc(12, 1);
      const sealed = await s.encrypt({ name: 'AES_GCM', iv }, key, Buffer.from('still here'));
      expect((await s.decrypt({ name: 'AES_GCM', iv }, key, sealed)).toString()).toBe('still here');
      expect(owed()).toEqual([`replica:${key}`, `replica:${kept}`].sort());

      // The disk is back: the deletion runs, and member-3 owes nothing for the key any more (its replica was never made).
      rmSync(journalDir);
      mkdirSync(journalDir);
      await s.destroyObject(key);
      expect(await s.findObjects({ label: 'ahead-aes' })).toEqual([]);
      expect(owed()).toEqual([`replica:${kept}`]);
    } finally {
      await g.close().catch(() => undefined);
    }
  });
});

describe('key management with members failing in the middle (fault transports)', () => {
  const fx = faultGroups({ prefix: 'rn', domain: true });

  it('a creation rolled back owes the removal of a copy a member took before it failed (its link went with it)', async () => {
    const h = await fx.openSigning({ extra: { minReplicas: 3 } });
    // member-2's copy is held; member-3 takes its copy, then fails; member-2's copy is then refused.
    h.faults[1]!.failNext('unwrapKey', 'hang');
    const creating = h.session.generateKey('AES_KEY_GEN', { label: 'rb-lost', valueLen: 32, token: true, encrypt: true }).catch((e: unknown) => e);
    await until(() => h.faults[1]!.hanging === 1 && h.faults[2]!.executed('unwrapKey') > 0 && h.faults[2]!.pending === 0, 'member-3 to take its copy');
    h.faults[2]!.disconnect();
    h.faults[1]!.release(new Error('refused (injected)'));
    expect(await creating).toMatchObject({ code: 'ERR_REPLICATION' });
    const owed = [...internalsOf(h.group).journal.entries()].flatMap(([m, debts]) => debts.map((d) => `${m}:${d.kind}`));
    expect(owed).toContain('member-3:destroy');
    // Back, it removes the copy.
    expect(await h.group.recover('member-3')).toBe(true);
    expect(h.group.status().owed['member-3'] ?? 0).toBe(0);
    expect(await h.session.findObjects({ label: 'rb-lost' })).toEqual([]);
  });

  it('a change reaches serving members the catalog has not linked again yet, instead of being owed by them (chaos run, seed 1)', async () => {
    const h = await fx.openSigning();
    const key = await h.session.generateKey('AES_KEY_GEN', { label: 'rn-partly', valueLen: 32, token: true, encrypt: true, decrypt: true });
    const object = internalsOf(h.group).catalog.get(key)!;
    // As after a logout, when one member's scan has linked its copy and the others' not yet.
    internalsOf(h.group).catalog.unlink(object, 1);
    internalsOf(h.group).catalog.unlink(object, 2);
    await h.session.setAttributes(key, { label: 'rn-partly-2' });
    expect(h.group.status().owed).toEqual({});
    // The member linked alone fails: the others serve the key under its new name.
    h.faults[0]!.disconnect();
    const iv = Buffer.alloc(12, 1);
    const sealed = await h.session.encrypt({ name: 'AES_GCM', iv }, key, Buffer.from('partly'));
    expect(sealed.length).toBeGreaterThan(0);
  });

  it('leaves the catalog with the new name: the key is found and used under it after its links are forgotten (chaos run: keys lost every holder)', async () => {
    const h = await fx.openSigning();
    const key = await h.session.generateKey('AES_KEY_GEN', { label: 'rn-old', valueLen: 32, token: true, encrypt: true, decrypt: true });
    const status = h.group.status();
    const primary = status.members.findIndex((m) => m.name === status.primary);
    // The rename reaches the first holder; the next read there finds the member gone.
    h.faults[primary]!.failNext('getAttributes', 'disconnect');
    await h.session.setAttributes(key, { label: 'rn-new' });
    h.faults[primary]!.disconnect();
    expect(states(h.group)[primary]).toBe('failed');
    // A logout forgets every private object's links: holders are found again by name.
    await h.session.logout();
    await h.session.login(fx.bed.tokens[0]!.userPin);
    expect(await h.session.findObjects({ label: 'rn-new' })).toEqual([key]);
    const iv = randomBytes(16);
    const sealed = await h.session.encrypt({ name: 'AES_CBC_PAD', iv }, key, Buffer.from('renamed'));
    expect((await h.session.decrypt({ name: 'AES_CBC_PAD', iv }, key, sealed)).toString()).toBe('renamed');
    expect(h.group.describeObject(key)?.holders).toHaveLength(2);
  });
});
