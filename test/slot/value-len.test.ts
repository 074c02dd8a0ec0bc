/**
 * CKA_VALUE_LEN of secret keys the group makes (slot/value-len.ts): SoftHSM answers 0 on
 * a key made by C_UnwrapKey, which every member's copy of a group-made key is; the virtual
 * session answers the length given at creation.
 */
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { internalsOf } from '../../src/testing.js';
import { faultGroups } from '../helpers/fault-group.js';

const fx = faultGroups({ prefix: 'vl', domain: true });

describe('CKA_VALUE_LEN of group-made secret keys', () => {
  it.each([
    ['a token key', true],
    ['a session key', false],
  ])('%s made with valueLen answers that length, though the members answer 0', async (_name, token) => {
    const h = await fx.openSigning();
    const key = await h.session.generateKey('AES_KEY_GEN', { valueLen: 24, token, encrypt: true, decrypt: true, label: `vl-made-${token}` });
    expect(await h.session.getAttributes(key, ['valueLen', 'keyType'])).toMatchObject({ valueLen: 24 });
    const internals = internalsOf(h.group);
    const object = internals.catalog.get(key)!;
    // What the members themselves answer (the SoftHSM fact this works around): 0 on every
    // copy of a token key (staged creation unwraps each), on the replicas of a session key.
    const raw = await Promise.all(
      [...object.holders].map(([i, handle]) =>
        internals.members[i]!.run<'getAttributes'>((session) => ({ op: 'getAttributes', session, object: handle, types: [pkcs11js.CKA_VALUE_LEN] })),
      ),
    );
    expect(raw.length).toBe(3);
    expect(raw.some(([a]) => a!.value !== undefined && a!.value.every((b) => b === 0))).toBe(true);
    await h.session.destroyObject(key);
  });

  it('a secret key imported with its value answers the value length', async () => {
    const h = await fx.openSigning();
    const key = await h.session.createObject({ class: 'secretKey', keyType: 'genericSecret', value: Buffer.alloc(20, 7), token: false, sign: true, label: 'vl-imported' });
    expect(await h.session.getAttributes(key, ['valueLen'])).toMatchObject({ valueLen: 20 });
  });
});
