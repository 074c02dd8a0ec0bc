import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/index.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { toRawTemplate } from '../../src/pkcs11/template-codec.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { DOMAIN_KEY_LABEL } from '../../src/replication/domain-key.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';

describe('replication edges found in review', () => {
  let bed: Testbed;
  let group: HaGroup;
  let session: VirtualSession;
  const states = () => group.status().members.map((m) => m.state.kind);
  beforeAll(async () => {
    bed = await createTestbed({ count: 3 });
    await HaGroup.initDomain({ members: bed.memberConfigs() });
    group = await HaGroup.open({ members: bed.memberConfigs() });
    session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
  });
  afterAll(async () => {
    await group?.close();
    await bed?.dispose();
  });

  it('never hands the domain key to the application', async () => {
    expect(await session.findObjects({ label: DOMAIN_KEY_LABEL })).toEqual([]);
    const all = await session.findObjects();
    for (const h of all) expect(group.describeObject(h)?.name).not.toContain(Buffer.from(DOMAIN_KEY_LABEL).toString('hex'));
  });

  it("a malformed mechanism parameter is the caller's error and leaves the member clean", async () => {
    const key = await session.generateKey('AES_KEY_GEN', { valueLen: 32, encrypt: true });
    const bad = { mechanism: pkcs11js.CKM_AES_GCM, parameter: { type: pkcs11js.CK_PARAMS_GCM, tagBits: 128 } };
    for (let i = 0; i < 6; i++) {
      const error = await session.encrypt(bad, key, Buffer.alloc(16)).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: expect.stringMatching(/^ERR_(INVALID_ARGUMENT|PKCS11)$/) });
    }
    expect(states()).toEqual(['active', 'active', 'active']);
    expect(group.status().members.map((m) => m.outstanding)).toEqual([0, 0, 0]);
    // And the members still serve.
    expect(await session.encrypt({ name: 'AES_GCM', iv: randomBytes(12) }, key, Buffer.alloc(16))).toHaveLength(32);
  });

  it('a key that wants re-authentication fails its call, not its member; its replicas keep the policy', async () => {
    const always = [{ type: pkcs11js.CKA_ALWAYS_AUTHENTICATE, value: true }];
    const pair = await session.generateKeyPair(
      'EC_KEY_PAIR_GEN',
      { curve: 'P-256', token: false, verify: true },
      [...toRawTemplate({ token: false, sign: true }), ...always],
    );
    for (let i = 0; i < 3; i++) {
      await expect(session.sign('ECDSA', pair.privateKey, randomBytes(32))).rejects.toMatchObject({ code: 'ERR_PKCS11' });
    }
    expect(states()).toEqual(['active', 'active', 'active']);
    const read = await session.getAttributeValues(pair.privateKey, [pkcs11js.CKA_ALWAYS_AUTHENTICATE]);
    expect(read[0]?.value?.[0]).toBe(1);
  });

  it('a token half of a mixed key pair outlives the session that made it', async () => {
    const s = group.slot.openSession();
    const pair = await s.generateKeyPair('EC_KEY_PAIR_GEN', { curve: 'P-256', token: false, verify: true }, { label: 'mixed', token: true, sign: true });
    await s.close();
    expect(group.describeObject(pair.publicKey)).toBeUndefined();
    expect(group.describeObject(pair.privateKey)?.holders).toHaveLength(3);
    expect(await session.findObjects({ label: 'mixed' })).toEqual([pair.privateKey]);
    await session.destroyObject(pair.privateKey);
  });

  it('key management on a kept handle works after logout and login', async () => {
    const key = await session.generateKey('AES_KEY_GEN', { label: 'kept', valueLen: 32, token: true, encrypt: true });
    await session.logout();
    await session.login(bed.tokens[0]!.userPin);
    await session.setAttributes(key, { label: 'kept-renamed' });
    expect(await session.findObjects({ label: 'kept-renamed' })).toEqual([key]);
    await session.destroyObject(key);
    expect(await session.findObjects({ label: 'kept-renamed' })).toEqual([]);
  });
});
