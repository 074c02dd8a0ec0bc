/**
 * The facade's PKCS11 class, function by function, in each of pkcs11js's forms
 * (synchronous, callback, `*Async`), on a group of three member hosts: results checked
 * against node:crypto, and the errors pkcs11js gives for bad handles and arguments.
 */
import { createCipheriv, createECDH, createHash, createHmac, randomBytes } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PKCS11 } from '../../src/facade/pkcs11.js';
import { ckrOf, ckrOfAsync, facadeFixture, secretValue, viaCallback } from './facade-fixture.js';

const fixture = facadeFixture('p');
const F = pkcs11js;
let p: PKCS11;
let slot: Buffer;
let session: Buffer;
let hmac: Buffer;
let aes: Buffer;

function find(label: string, objectClass: number): Buffer {
  p.C_FindObjectsInit(session, [
    { type: F.CKA_LABEL, value: label },
    { type: F.CKA_CLASS, value: objectClass },
  ]);
  const found = p.C_FindObjects(session, 10);
  p.C_FindObjectsFinal(session);
  expect(found).toHaveLength(1);
  return found[0]!;
}

beforeAll(() => {
  p = new PKCS11();
  p.load(fixture.config());
  p.C_Initialize({ flags: F.CKF_OS_LOCKING_OK });
  slot = p.C_GetSlotList(true)[0]!;
  session = p.C_OpenSession(slot, F.CKF_SERIAL_SESSION | F.CKF_RW_SESSION);
  p.C_Login(session, F.CKU_USER, fixture.userPin);
  hmac = find('p-hmac', F.CKO_SECRET_KEY);
  aes = find('p-aes', F.CKO_SECRET_KEY);
}, 120_000);

afterAll(() => {
  p?.C_Finalize();
});

describe('the slot and the token', () => {
  it('shows one virtual slot, a token describing the group, and the mechanisms of the slot', async () => {
    expect(p.C_GetInfo().manufacturerID.trim()).toBe('pkcs11-ha');
    expect(p.C_GetSlotList(false)).toEqual([slot]);
    expect(p.C_GetSlotInfo(slot).flags & 1).toBe(1);
    const token = p.C_GetTokenInfo(slot);
    expect(token.label.trim()).toBe('pkcs11-ha');
    expect(token.serialNumber).toMatch(/^[0-9a-f]{16}$/);
    expect(token.flags & F.CKF_LOGIN_REQUIRED).toBeTruthy();
    // Limits that hold on every member (SoftHSM's), the virtual slot's own session count.
    expect([token.minPinLen, token.maxPinLen]).toEqual([4, 255]);
    expect(token.flags & (F.CKF_RNG | F.CKF_USER_PIN_INITIALIZED | F.CKF_TOKEN_INITIALIZED)).toBe(F.CKF_RNG | F.CKF_USER_PIN_INITIALIZED | F.CKF_TOKEN_INITIALIZED);
    expect(token.sessionCount).toBe(1);
    expect((await p.C_GetTokenInfoAsync(slot)).serialNumber).toBe(token.serialNumber);
    expect(p.C_GetMechanismList(slot)).toContain(F.CKM_AES_GCM);
    expect(p.C_GetMechanismInfo(slot, F.CKM_AES_GCM).flags & F.CKF_ENCRYPT).toBeTruthy();
    expect(ckrOf(() => p.C_GetMechanismInfo(slot, 0x8000abcd))).toBe('CKR_MECHANISM_INVALID');
    expect(await p.C_GetMechanismListAsync(slot)).toEqual(p.C_GetMechanismList(slot));
    expect(p.C_GetMechanismList(slot)).toContain(F.CKM_ECDSA);
    expect(ckrOf(() => p.C_GetTokenInfo(Buffer.alloc(8, 7)))).toBe('CKR_SLOT_ID_INVALID');
  });

  it('refuses InitToken and WaitForSlotEvent', () => {
    expect(ckrOf(() => p.C_InitToken(slot, 'x', 'label'))).toBe('CKR_FUNCTION_NOT_SUPPORTED');
    expect(ckrOf(() => p.C_WaitForSlotEvent(0))).toBe('CKR_FUNCTION_NOT_SUPPORTED');
  });
});

describe('sessions and login', () => {
  it('keeps session states and PKCS#11 login rules', async () => {
    const ro = p.C_OpenSession(slot, F.CKF_SERIAL_SESSION);
    expect(p.C_GetSessionInfo(ro)).toMatchObject({ slotID: slot, state: 1, flags: F.CKF_SERIAL_SESSION });
    expect(p.C_GetSessionInfo(session).state).toBe(3);
    expect(ckrOf(() => p.C_Login(ro, F.CKU_USER, fixture.userPin))).toBe('CKR_USER_ALREADY_LOGGED_IN');
    expect(ckrOf(() => p.C_Login(ro, 7, fixture.userPin))).toBe('CKR_USER_TYPE_INVALID');
    expect(ckrOf(() => p.C_OpenSession(slot, F.CKF_RW_SESSION))).toBe('CKR_SESSION_PARALLEL_NOT_SUPPORTED');
    p.C_CloseSession(ro);
    expect(ckrOf(() => p.C_GetSessionInfo(ro))).toBe('CKR_SESSION_HANDLE_INVALID');
    expect(await ckrOfAsync(() => p.C_GetSessionInfoAsync(ro))).toBe('CKR_SESSION_HANDLE_INVALID');
  });

  it('gives the TypeErrors pkcs11js gives for missing and mistyped arguments', () => {
    expect(() => (p.C_OpenSession as (...a: unknown[]) => unknown)(slot)).toThrow(new TypeError('Parameters are required. Expected 2 arguments, but received 1.'));
    expect(() => p.C_CloseSession(123 as unknown as Buffer)).toThrow(new TypeError('Argument 0 has wrong type. Should be a Buffer'));
  });
});

describe('objects', () => {
  it('creates, reads, changes, copies, finds and destroys objects', async () => {
    const value = randomBytes(32);
    const key = p.C_CreateObject(session, [
      { type: F.CKA_CLASS, value: F.CKO_SECRET_KEY },
      { type: F.CKA_KEY_TYPE, value: F.CKK_AES },
      { type: F.CKA_VALUE, value },
      { type: F.CKA_TOKEN, value: false },
      { type: F.CKA_LABEL, value: 'p-created' },
      { type: F.CKA_ENCRYPT, value: true },
    ]);
    expect(p.C_GetAttributeValue(session, key, [{ type: F.CKA_LABEL }, { type: F.CKA_VALUE_LEN }])).toEqual([
      { type: F.CKA_LABEL, value: Buffer.from('p-created') },
      { type: F.CKA_VALUE_LEN, value: Buffer.from([32, 0, 0, 0, 0, 0, 0, 0]) },
    ]);
    p.C_SetAttributeValue(session, key, [{ type: F.CKA_LABEL, value: 'p-renamed' }]);
    expect((await p.C_GetAttributeValueAsync(session, key, [{ type: F.CKA_LABEL }]))[0]!.value).toEqual(Buffer.from('p-renamed'));
    const copy = p.C_CopyObject(session, key, [{ type: F.CKA_LABEL, value: 'p-copy' }]);
    p.C_FindObjectsInit(session, [{ type: F.CKA_LABEL, value: 'p-copy' }]);
    expect(ckrOf(() => p.C_FindObjectsInit(session, []))).toBe('CKR_OPERATION_ACTIVE');
    expect(p.C_FindObjects(session)).toEqual(copy);
    expect(p.C_FindObjects(session)).toBeNull();
    p.C_FindObjectsFinal(session);
    expect(ckrOf(() => p.C_FindObjects(session))).toBe('CKR_OPERATION_NOT_INITIALIZED');
    // A session object goes with its session.
    const other = p.C_OpenSession(slot, F.CKF_SERIAL_SESSION | F.CKF_RW_SESSION);
    const temporary = p.C_CopyObject(other, key, [{ type: F.CKA_LABEL, value: 'p-temporary' }]);
    expect(p.C_GetAttributeValue(session, temporary, [{ type: F.CKA_CLASS }])[0]!.value.readUInt32LE(0)).toBe(F.CKO_SECRET_KEY);
    p.C_CloseSession(other);
    expect(ckrOf(() => p.C_GetAttributeValue(session, temporary, [{ type: F.CKA_CLASS }]))).toBe('CKR_OBJECT_HANDLE_INVALID');
    p.C_DestroyObject(session, copy);
    await p.C_DestroyObjectAsync(session, key);
    expect(ckrOf(() => p.C_GetAttributeValue(session, key, [{ type: F.CKA_LABEL }]))).toBe('CKR_OBJECT_HANDLE_INVALID');
    expect(ckrOf(() => p.C_GetAttributeValue(session, hmac, [{ type: F.CKA_VALUE }]))).toBe('CKR_ATTRIBUTE_TYPE_INVALID');
  });

  it("never shows the group's domain key", () => {
    p.C_FindObjectsInit(session, [{ type: F.CKA_LABEL, value: 'pkcs11-ha domain key' }]);
    expect(p.C_FindObjects(session, 10)).toEqual([]);
    p.C_FindObjectsFinal(session);
    p.C_FindObjectsInit(session, []);
    const all = p.C_FindObjects(session, 1000);
    p.C_FindObjectsFinal(session);
    expect(all.length).toBeGreaterThanOrEqual(6); // the provisioned keys, at least
    const labels = all.map((h) => p.C_GetAttributeValue(session, h, [{ type: F.CKA_LABEL }])[0]!.value.toString());
    expect(labels).not.toContain('pkcs11-ha domain key');
  });
});

describe('cryptographic functions in each form', () => {
  const data = Buffer.from('the same data in every form');
  const expectedMac = () => createHmac('sha256', secretValue(fixture.keys, 'hmac')).update(data).digest();

  it('signs and verifies: sync, callback and promise, single and multi-part', async () => {
    const mech = { mechanism: F.CKM_SHA256_HMAC };
    p.C_SignInit(session, mech, hmac);
    expect(p.C_Sign(session, data, Buffer.alloc(64))).toEqual(expectedMac());
    p.C_SignInit(session, mech, hmac);
    expect(await viaCallback<Buffer>((cb) => p.C_Sign(session, data, Buffer.alloc(64), cb))).toEqual(expectedMac());
    p.C_SignInit(session, mech, hmac);
    expect(await p.C_SignAsync(session, data, Buffer.alloc(64))).toEqual(expectedMac());
    p.C_SignInit(session, mech, hmac);
    p.C_SignUpdate(session, data.subarray(0, 5));
    p.C_SignUpdate(session, data.subarray(5));
    expect(await p.C_SignFinalAsync(session, Buffer.alloc(64))).toEqual(expectedMac());

    p.C_VerifyInit(session, mech, hmac);
    expect(p.C_Verify(session, data, expectedMac())).toBe(true);
    p.C_VerifyInit(session, mech, hmac);
    expect(await viaCallback<boolean>((cb) => p.C_Verify(session, data, expectedMac(), cb))).toBe(true);
    p.C_VerifyInit(session, mech, hmac);
    expect(await ckrOfAsync(() => p.C_VerifyAsync(session, Buffer.from('other'), expectedMac()))).toBe('CKR_SIGNATURE_INVALID');
    p.C_VerifyInit(session, mech, hmac);
    p.C_VerifyUpdate(session, data);
    expect(p.C_VerifyFinal(session, expectedMac())).toBe(true);
    p.C_VerifyInit(session, mech, hmac);
    expect(ckrOf(() => p.C_Verify(session, data, Buffer.alloc(32)))).toBe('CKR_SIGNATURE_INVALID');
  });

  it('keeps PKCS#11 operation rules', async () => {
    expect(ckrOf(() => p.C_Sign(session, data, Buffer.alloc(64)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
    const mech = { mechanism: F.CKM_SHA256_HMAC };
    p.C_SignInit(session, mech, hmac);
    // A C_*Init goes with the next call (no round trip of its own): what it refuses, the
    // next call of that operation refuses, with the Init's code, once.
    p.C_SignInit(session, mech, hmac);
    expect(ckrOf(() => p.C_Sign(session, data, Buffer.alloc(8)))).toBe('CKR_OPERATION_ACTIVE');
    expect(ckrOf(() => p.C_Sign(session, data, Buffer.alloc(8)))).toBe('CKR_BUFFER_TOO_SMALL');
    expect(p.C_Sign(session, data, Buffer.alloc(32))).toEqual(expectedMac()); // still open after BUFFER_TOO_SMALL
    // Handles the group never gave out and bad mechanisms are refused by the Init itself.
    expect(ckrOf(() => p.C_SignInit(session, mech, Buffer.alloc(8, 0xee)))).toBe('CKR_KEY_HANDLE_INVALID');
    expect(ckrOf(() => p.C_SignInit(Buffer.alloc(8, 0xee), mech, hmac))).toBe('CKR_SESSION_HANDLE_INVALID');
    expect(await ckrOfAsync(() => p.C_SignInitAsync(session, mech, Buffer.alloc(8, 0xee)))).toBe('CKR_KEY_HANDLE_INVALID');
    // A key destroyed since it was given out: the next call of the operation refuses it.
    const gone = p.C_CreateObject(session, [
      { type: F.CKA_CLASS, value: F.CKO_SECRET_KEY },
      { type: F.CKA_KEY_TYPE, value: F.CKK_GENERIC_SECRET },
      { type: F.CKA_VALUE, value: Buffer.alloc(32, 1) },
      { type: F.CKA_SIGN, value: true },
    ]);
    p.C_DestroyObject(session, gone);
    p.C_SignInit(session, mech, gone);
    expect(ckrOf(() => p.C_Sign(session, data, Buffer.alloc(32)))).toBe('CKR_KEY_HANDLE_INVALID');
    expect(ckrOf(() => p.C_Sign(session, data, Buffer.alloc(32)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
    // A refused Init followed by a good one: the good one counts.
    p.C_SignInit(session, mech, gone);
    p.C_SignInit(session, mech, hmac);
    expect(p.C_Sign(session, data, Buffer.alloc(32))).toEqual(expectedMac());
    // The promise form of an Init is pipelined too; multi-part steps see its refusal.
    await p.C_SignInitAsync(session, mech, gone);
    expect(await ckrOfAsync(() => p.C_SignUpdateAsync(session, data))).toBe('CKR_KEY_HANDLE_INVALID');
  });

  it('encrypts and decrypts as node:crypto does, in each form', async () => {
    const iv = randomBytes(16);
    const mech = { mechanism: F.CKM_AES_CBC_PAD, parameter: iv };
    const node = createCipheriv('aes-256-cbc', secretValue(fixture.keys, 'aes'), iv);
    const expected = Buffer.concat([node.update(data), node.final()]);
    p.C_EncryptInit(session, mech, aes);
    expect(p.C_Encrypt(session, data, Buffer.alloc(256))).toEqual(expected);
    p.C_EncryptInit(session, mech, aes);
    expect(await viaCallback<Buffer>((cb) => p.C_Encrypt(session, data, Buffer.alloc(256), cb))).toEqual(expected);
    p.C_EncryptInit(session, mech, aes);
    const parts = [p.C_EncryptUpdate(session, data.subarray(0, 20), Buffer.alloc(64)), p.C_EncryptUpdate(session, data.subarray(20), Buffer.alloc(64)), await p.C_EncryptFinalAsync(session, Buffer.alloc(64))];
    expect(Buffer.concat(parts)).toEqual(expected);
    p.C_DecryptInit(session, mech, aes);
    expect(await p.C_DecryptAsync(session, expected, Buffer.alloc(256))).toEqual(data);
    p.C_DecryptInit(session, mech, aes);
    const plain = [p.C_DecryptUpdate(session, expected, Buffer.alloc(64)), await viaCallback<Buffer>((cb) => p.C_DecryptFinal(session, Buffer.alloc(64), cb))];
    expect(Buffer.concat(plain)).toEqual(data);
  });

  it('digests as node:crypto does, in each form, and digests a key', async () => {
    const mech = { mechanism: F.CKM_SHA256 };
    const expected = createHash('sha256').update(data).digest();
    p.C_DigestInit(session, mech);
    expect(p.C_Digest(session, data, Buffer.alloc(32))).toEqual(expected);
    p.C_DigestInit(session, mech);
    expect(await p.C_DigestAsync(session, data, Buffer.alloc(32))).toEqual(expected);
    p.C_DigestInit(session, mech);
    p.C_DigestUpdate(session, data);
    expect(await viaCallback<Buffer>((cb) => p.C_DigestFinal(session, Buffer.alloc(32), cb))).toEqual(expected);
    p.C_DigestInit(session, mech);
    p.C_DigestKey(session, aes);
    expect(p.C_DigestFinal(session, Buffer.alloc(32))).toEqual(createHash('sha256').update(secretValue(fixture.keys, 'aes')).digest());
  });
});

describe('key management in each form', () => {
  const aesTemplate = (label: string) => [
    { type: F.CKA_CLASS, value: F.CKO_SECRET_KEY },
    { type: F.CKA_KEY_TYPE, value: F.CKK_AES },
    { type: F.CKA_VALUE_LEN, value: 32 },
    { type: F.CKA_TOKEN, value: false },
    { type: F.CKA_LABEL, value: label },
    { type: F.CKA_ENCRYPT, value: true },
    { type: F.CKA_DECRYPT, value: true },
  ];
  const mech = { mechanism: F.CKM_AES_KEY_GEN };

  it('generates keys and key pairs', async () => {
    const keys = [
      p.C_GenerateKey(session, mech, aesTemplate('p-gen-1')),
      await viaCallback<Buffer>((cb) => p.C_GenerateKey(session, mech, aesTemplate('p-gen-2'), cb)),
      await p.C_GenerateKeyAsync(session, mech, aesTemplate('p-gen-3')),
    ];
    for (const key of keys) expect(p.C_GetAttributeValue(session, key, [{ type: F.CKA_VALUE_LEN }])[0]!.value.readUInt32LE(0)).toBe(32);
    const ecParams = Buffer.from('06082a8648ce3d030107', 'hex');
    const pub = [{ type: F.CKA_EC_PARAMS, value: ecParams }, { type: F.CKA_TOKEN, value: false }, { type: F.CKA_VERIFY, value: true }];
    const priv = [{ type: F.CKA_TOKEN, value: false }, { type: F.CKA_SIGN, value: true }, { type: F.CKA_DERIVE, value: true }];
    const ecMech = { mechanism: F.CKM_EC_KEY_PAIR_GEN };
    const pairs = [
      p.C_GenerateKeyPair(session, ecMech, pub, priv),
      await viaCallback<pkcs11js.KeyPair>((cb) => p.C_GenerateKeyPair(session, ecMech, pub, priv, cb)),
      await p.C_GenerateKeyPairAsync(session, ecMech, pub, priv),
    ];
    for (const pair of pairs) {
      const digest = createHash('sha256').update('x').digest();
      p.C_SignInit(session, { mechanism: F.CKM_ECDSA }, pair.privateKey);
      const signature = p.C_Sign(session, digest, Buffer.alloc(128));
      p.C_VerifyInit(session, { mechanism: F.CKM_ECDSA }, pair.publicKey);
      expect(p.C_Verify(session, digest, signature)).toBe(true);
    }

    // ECDH: the derived key is node:crypto's shared secret (CKD_NULL, first 32 bytes).
    const peer = createECDH('prime256v1');
    peer.generateKeys();
    const point = p.C_GetAttributeValue(session, pairs[0]!.publicKey, [{ type: F.CKA_EC_POINT }])[0]!.value;
    const secret = peer.computeSecret(point.subarray(2));
    const deriveMech = { mechanism: F.CKM_ECDH1_DERIVE, parameter: { type: F.CK_PARAMS_EC_DH, kdf: F.CKD_NULL, publicData: peer.getPublicKey() } };
    const derived = [
      p.C_DeriveKey(session, deriveMech, pairs[0]!.privateKey, aesTemplate('p-derived-1')),
      await p.C_DeriveKeyAsync(session, deriveMech, pairs[0]!.privateKey, aesTemplate('p-derived-2')),
      await viaCallback<Buffer>((cb) => p.C_DeriveKey(session, deriveMech, pairs[0]!.privateKey, aesTemplate('p-derived-3'), cb)),
    ];
    const iv = randomBytes(16);
    const node = createCipheriv('aes-256-cbc', secret.subarray(0, 32), iv);
    const expected = Buffer.concat([node.update('derived'), node.final()]);
    for (const key of derived) {
      p.C_EncryptInit(session, { mechanism: F.CKM_AES_CBC_PAD, parameter: iv }, key);
      expect(p.C_Encrypt(session, Buffer.from('derived'), Buffer.alloc(64))).toEqual(expected);
    }
  });

  it('unwraps keys wrapped outside the group, and refuses to wrap the group\'s keys under the application\'s', async () => {
    const kekValue = randomBytes(32);
    const kek = p.C_CreateObject(session, [
      { type: F.CKA_CLASS, value: F.CKO_SECRET_KEY },
      { type: F.CKA_KEY_TYPE, value: F.CKK_AES },
      { type: F.CKA_VALUE, value: kekValue },
      { type: F.CKA_TOKEN, value: false },
      { type: F.CKA_WRAP, value: true },
      { type: F.CKA_UNWRAP, value: true },
    ]);
    const secret = randomBytes(32);
    const kw = createCipheriv('id-aes256-wrap-pad', kekValue, Buffer.from('a65959a6', 'hex'));
    const wrapped = Buffer.concat([kw.update(secret), kw.final()]);
    const mech = { mechanism: F.CKM_AES_KEY_WRAP_PAD };
    const template = aesTemplate('p-unwrapped').filter((a) => a.type !== F.CKA_VALUE_LEN);
    const keys = [
      p.C_UnwrapKey(session, mech, kek, wrapped, template),
      await p.C_UnwrapKeyAsync(session, mech, kek, wrapped, template),
      await viaCallback<Buffer>((cb) => p.C_UnwrapKey(session, mech, kek, wrapped, template, cb)),
    ];
    const iv = randomBytes(16);
    const node = createCipheriv('aes-256-cbc', secret, iv);
    const expected = Buffer.concat([node.update('unwrapped'), node.final()]);
    for (const key of keys) {
      p.C_EncryptInit(session, { mechanism: F.CKM_AES_CBC_PAD, parameter: iv }, key);
      expect(await p.C_EncryptAsync(session, Buffer.from('unwrapped'), Buffer.alloc(64))).toEqual(expected);
    }
    expect(ckrOf(() => p.C_WrapKey(session, mech, kek, keys[0]!, Buffer.alloc(256)))).toMatch(/CKR_KEY_NOT_WRAPPABLE|CKR_KEY_UNEXTRACTABLE/);
    expect(await ckrOfAsync(() => p.C_WrapKeyAsync(session, mech, kek, keys[0]!, Buffer.alloc(256)))).toMatch(/CKR_KEY_NOT_WRAPPABLE|CKR_KEY_UNEXTRACTABLE/);
    expect(ckrOf(() => p.C_WrapKey(session, mech, Buffer.alloc(8, 0xee), keys[0]!, Buffer.alloc(256)))).toBe('CKR_KEY_HANDLE_INVALID');
  });

  it('gives random bytes and takes a seed', async () => {
    const out = Buffer.alloc(32);
    expect(p.C_GenerateRandom(session, out)).toBe(out);
    expect(out.equals(Buffer.alloc(32))).toBe(false);
    expect((await p.C_GenerateRandomAsync(session, Buffer.alloc(16))).length).toBe(16);
    expect(p.C_SeedRandom(session, randomBytes(8))).toBeUndefined();
  });
});

describe('initialisation', () => {
  it('shares the group between PKCS11 objects, closes it with the last C_Finalize, and opens it again', () => {
    const other = new PKCS11(fixture.config());
    expect(ckrOf(() => other.C_OpenSession(slot, F.CKF_SERIAL_SESSION))).toBe('CKR_CRYPTOKI_NOT_INITIALIZED');
    other.C_Initialize();
    expect(ckrOf(() => other.C_Initialize())).toBe('CKR_CRYPTOKI_ALREADY_INITIALIZED');
    const s = other.C_OpenSession(slot, F.CKF_SERIAL_SESSION | F.CKF_RW_SESSION);
    expect(p.C_GetSessionInfo(s).state).toBe(3); // login is the application's, shared
    other.C_Finalize();
    expect(ckrOf(() => other.C_Finalize())).toBe('CKR_CRYPTOKI_NOT_INITIALIZED');
    expect(ckrOf(() => p.C_GetSessionInfo(s))).toBe('CKR_SESSION_HANDLE_INVALID');
    // The first object's session lives on: the group stayed open.
    expect(p.C_GetSessionInfo(session).state).toBe(3);
  });

  it('opens the group again after the last C_Finalize closed it', () => {
    const config = fixture.config({ memberOrder: { clientId: 'cycles' } });
    for (let cycle = 0; cycle < 2; cycle++) {
      const q = new PKCS11(config);
      q.C_Initialize();
      const s = q.C_OpenSession(slot, F.CKF_SERIAL_SESSION);
      expect(q.C_GetSessionInfo(s).state).toBe(0); // a group of its own: nobody logged in yet
      q.C_Finalize();
      expect(ckrOf(() => q.C_GetSessionInfo(s))).toBe('CKR_CRYPTOKI_NOT_INITIALIZED');
    }
  });

  it('changes the user PIN on the group with C_SetPIN (sync and promise), by PKCS#11 rules', async () => {
    const pin = fixture.userPin;
    const next = '40917263';
    const ro = p.C_OpenSession(slot, F.CKF_SERIAL_SESSION);
    expect(ckrOf(() => p.C_SetPIN(ro, pin, next))).toBe('CKR_SESSION_READ_ONLY');
    p.C_CloseSession(ro);
    expect(ckrOf(() => p.C_InitPIN(session, next))).toBe('CKR_USER_NOT_LOGGED_IN');
    expect(() => p.C_SetPIN(session, pin, 7 as unknown as string)).toThrow(TypeError);
    let wrong: unknown;
    try {
      p.C_SetPIN(session, '00000000', next);
    } catch (error) {
      wrong = error;
    }
    expect((wrong as pkcs11js.Pkcs11Error).message).toBe('CKR_PIN_INCORRECT');
    expect(String((wrong as { cause?: Error }).cause?.message)).not.toContain('00000000');
    p.C_SetPIN(session, pin, next);
    try {
      p.C_Logout(session);
      expect(ckrOf(() => p.C_Login(session, F.CKU_USER, pin))).toBe('CKR_PIN_INCORRECT');
      p.C_Login(session, F.CKU_USER, next);
    } finally {
      await p.C_SetPINAsync(session, next, pin);
    }
    p.C_Logout(session);
    p.C_Login(session, F.CKU_USER, pin);
    expect(p.C_GetSessionInfo(session).state).toBe(3);
  });

  it('sets the user PIN with C_InitPIN as the security officer', () => {
    const so = new PKCS11(fixture.config({ memberOrder: 'config' }));
    so.C_Initialize();
    const pin = fixture.userPin;
    const next = '61029384';
    try {
      const s = so.C_OpenSession(slot, F.CKF_SERIAL_SESSION | F.CKF_RW_SESSION);
      const sop = fixture.groups.bed.tokens[0]!.soPin;
      so.C_Login(s, F.CKU_SO, sop);
      so.C_InitPIN(s, next);
      so.C_Logout(s);
      try {
        expect(ckrOf(() => so.C_Login(s, F.CKU_USER, pin))).toBe('CKR_PIN_INCORRECT');
        so.C_Login(s, F.CKU_USER, next);
        so.C_Logout(s);
      } finally {
        so.C_Login(s, F.CKU_SO, sop);
        so.C_InitPIN(s, pin);
        so.C_Logout(s);
      }
      so.C_Login(s, F.CKU_USER, pin);
    } finally {
      so.C_Finalize();
    }
  });

  it('logs in as the security officer on a read-write session', () => {
    const so = new PKCS11(fixture.config({ memberOrder: 'config' }));
    so.C_Initialize();
    try {
      const s = so.C_OpenSession(slot, F.CKF_SERIAL_SESSION | F.CKF_RW_SESSION);
      const sop = fixture.groups.bed.tokens[0]!.soPin;
      so.C_Login(s, F.CKU_SO, sop);
      expect(so.C_GetSessionInfo(s).state).toBe(4);
      expect(ckrOf(() => so.C_OpenSession(slot, F.CKF_SERIAL_SESSION))).toBe('CKR_SESSION_READ_WRITE_SO_EXISTS');
      so.C_Logout(s);
      expect(ckrOf(() => so.C_Logout(s))).toBe('CKR_USER_NOT_LOGGED_IN');
    } finally {
      so.C_Finalize();
    }
  });
});
