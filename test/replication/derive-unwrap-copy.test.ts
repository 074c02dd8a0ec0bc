import { createCipheriv, createDecipheriv, createECDH, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/index.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';

/** Encrypts on the group three times in a row (one member each) and opens each result with node. */
async function expectSameKeyEverywhere(session: VirtualSession, handle: number, key: Buffer): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const iv = randomBytes(12);
    const pt = randomBytes(64);
    const ct = await session.encrypt({ name: 'AES_GCM', iv }, handle, pt);
    const d = createDecipheriv('aes-256-gcm', key, iv);
    d.setAuthTag(ct.subarray(ct.length - 16));
    expect(Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()])).toEqual(pt);
  }
}

describe('unwrapKey, deriveKey and copyObject replicate their results', () => {
  let bed: Testbed;
  let group: HaGroup;
  let session: VirtualSession;
  beforeAll(async () => {
    bed = await createTestbed({ count: 3 });
    await HaGroup.initDomain({ members: bed.memberConfigs() });
    group = await HaGroup.open({ members: bed.memberConfigs(), journalPath: join(bed.dir, 'journal.json') });
    session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
  });
  afterAll(async () => {
    await group?.close();
    await bed?.dispose();
  });

  it('unwrapKey: a key wrapped outside (RFC 5649) arrives on every member and matches', async () => {
    const kek = randomBytes(32);
    const inner = randomBytes(32);
    const wrapping = await session.createObject({ class: 'secretKey', keyType: 'aes', value: kek, token: false, unwrap: true, wrap: true });
    const c = createCipheriv('id-aes256-wrap-pad', kek, Buffer.from('a65959a6', 'hex'));
    const blob = Buffer.concat([c.update(inner), c.final()]);
    const key = await session.unwrapKey('AES_KEY_WRAP_PAD', wrapping, blob, { class: 'secretKey', keyType: 'aes', token: false, encrypt: true, decrypt: true, label: 'unwrapped' });
    expect(group.describeObject(key)?.holders).toEqual(['member-1', 'member-2', 'member-3']);
    await expectSameKeyEverywhere(session, key, inner);
  });

  it('deriveKey: ECDH with an outside party gives the same key on every member as node computes', async () => {
    const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { curve: 'P-256', token: false, verify: true }, { token: false, derive: true, sign: true });
    const { ecPoint } = await session.getAttributes(pair.publicKey, ['ecPoint']);
    const point = (ecPoint as Buffer).subarray(2); // strip the DER OCTET STRING header
    const peer = createECDH('prime256v1');
    peer.generateKeys();
    const secret = peer.computeSecret(point);
    const key = await session.deriveKey(
      { mechanism: pkcs11js.CKM_ECDH1_DERIVE, parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: peer.getPublicKey() } },
      pair.privateKey,
      { class: 'secretKey', keyType: 'aes', valueLen: 32, token: false, encrypt: true, decrypt: true },
    );
    expect(group.describeObject(key)?.holders).toHaveLength(3);
    await expectSameKeyEverywhere(session, key, secret.subarray(0, 32));
  });

  it('copyObject: the copy is a new object on every member with the same material', async () => {
    const value = randomBytes(32);
    const original = await session.createObject({ class: 'secretKey', keyType: 'aes', value, label: 'orig', token: false, encrypt: true, decrypt: true });
    const copy = await session.copyObject(original, { label: 'copy' });
    expect(copy).not.toBe(original);
    expect(group.describeObject(copy)?.holders).toHaveLength(3);
    expect(await session.getAttributes(copy, ['label'])).toMatchObject({ label: 'copy' });
    await expectSameKeyEverywhere(session, copy, value);
  });

  it('the journal file survives a restart, holds no key bytes, and keeps a stale copy from coming back', async () => {
    const value = randomBytes(32);
    const key = await session.createObject({ class: 'secretKey', keyType: 'aes', value, label: 'doomed', token: true, encrypt: true, decrypt: true });
    expect(group.describeObject(key)?.holders).toEqual(['member-1', 'member-2', 'member-3']);
    // member-3 goes away; the key is destroyed on the others; member-3 owes the deletion.
    await internalsOf(group).members[2]!.transport.close();
    await session.generateRandom(8).catch(() => undefined);
    await session.destroyObject(key);
    const path = join(bed.dir, 'journal.json');
    const text = readFileSync(path, 'utf8');
    expect(text).toContain('member-3');
    expect(text.includes(value.toString('base64')) || text.includes(value.toString('hex'))).toBe(false);
    await group.close();
    group = await HaGroup.open({ members: bed.memberConfigs(), journalPath: path });
    expect(group.status().owed).toEqual({ 'member-3': 1 });
    session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
    // member-3 still holds its copy, but the journal says it was deleted: no resurrection.
    expect(await session.findObjects({ label: 'doomed' })).toEqual([]);
  });
});
