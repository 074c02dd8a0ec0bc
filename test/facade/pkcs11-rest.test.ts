/**
 * The rest of pkcs11js 2.1's functions on the facade, in each form (synchronous, callback,
 * `*Async`), on a group of three member hosts: the dual-function updates (served by the
 * group, though SoftHSM itself refuses them), C_SeedRandom, C_GetObjectSize, and the
 * recover functions, which SoftHSM does not offer, so the facade answers as pkcs11js on
 * SoftHSM does. Results checked against node:crypto.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PKCS11 } from '../../src/facade/pkcs11.js';
import { ckrOf, ckrOfAsync, facadeFixture, secretValue, viaCallback } from './facade-fixture.js';

const fixture = facadeFixture('r');
const F = pkcs11js;
let p: PKCS11;
let session: Buffer;
let hmac: Buffer;
let aes: Buffer;
const bad = Buffer.alloc(8, 0xee);

function find(label: string): Buffer {
  p.C_FindObjectsInit(session, [{ type: F.CKA_LABEL, value: label }]);
  const found = p.C_FindObjects(session, 10);
  p.C_FindObjectsFinal(session);
  expect(found).toHaveLength(1);
  return found[0]!;
}

beforeAll(() => {
  p = new PKCS11(fixture.config());
  p.C_Initialize();
  const slot = p.C_GetSlotList(true)[0]!;
  session = p.C_OpenSession(slot, F.CKF_SERIAL_SESSION | F.CKF_RW_SESSION);
  p.C_Login(session, F.CKU_USER, fixture.userPin);
  hmac = find('r-hmac');
  aes = find('r-aes');
}, 120_000);

afterAll(() => {
  p?.C_Finalize();
});

describe('dual-function updates', () => {
  const data = randomBytes(64);
  const iv = randomBytes(16);
  const cbc = { mechanism: F.CKM_AES_CBC, parameter: iv };
  const sha256 = { mechanism: F.CKM_SHA256 };
  const hmacMech = { mechanism: F.CKM_SHA256_HMAC };
  const encrypted = (): Buffer => {
    const c = createCipheriv('aes-256-cbc', secretValue(fixture.keys, 'aes'), iv).setAutoPadding(false);
    return Buffer.concat([c.update(data), c.final()]);
  };

  it('digests and encrypts one part at a time, in each form (C_DigestEncryptUpdate)', async () => {
    p.C_DigestInit(session, sha256);
    p.C_EncryptInit(session, cbc, aes);
    const parts = [
      p.C_DigestEncryptUpdate(session, data.subarray(0, 16), Buffer.alloc(64)),
      await viaCallback<Buffer>((cb) => p.C_DigestEncryptUpdate(session, data.subarray(16, 32), Buffer.alloc(64), cb)),
      await p.C_DigestEncryptUpdateAsync(session, data.subarray(32), Buffer.alloc(64)),
      p.C_EncryptFinal(session, Buffer.alloc(16)),
    ];
    expect(Buffer.concat(parts)).toEqual(encrypted());
    expect(p.C_DigestFinal(session, Buffer.alloc(32))).toEqual(createHash('sha256').update(data).digest());
  });

  it('decrypts and digests (C_DecryptDigestUpdate)', async () => {
    const ct = encrypted();
    p.C_DecryptInit(session, cbc, aes);
    p.C_DigestInit(session, sha256);
    const plain = [p.C_DecryptDigestUpdate(session, ct.subarray(0, 32), Buffer.alloc(64)), await p.C_DecryptDigestUpdateAsync(session, ct.subarray(32), Buffer.alloc(64)), p.C_DecryptFinal(session, Buffer.alloc(16))];
    expect(Buffer.concat(plain)).toEqual(data);
    expect(p.C_DigestFinal(session, Buffer.alloc(32))).toEqual(createHash('sha256').update(data).digest());
  });

  it('signs and encrypts, decrypts and verifies (C_SignEncryptUpdate, C_DecryptVerifyUpdate)', async () => {
    const mac = createHmac('sha256', secretValue(fixture.keys, 'hmac')).update(data).digest();
    p.C_SignInit(session, hmacMech, hmac);
    p.C_EncryptInit(session, cbc, aes);
    const ct = Buffer.concat([p.C_SignEncryptUpdate(session, data.subarray(0, 48), Buffer.alloc(64)), await viaCallback<Buffer>((cb) => p.C_SignEncryptUpdate(session, data.subarray(48), Buffer.alloc(64), cb)), p.C_EncryptFinal(session, Buffer.alloc(16))]);
    expect(ct).toEqual(encrypted());
    expect(p.C_SignFinal(session, Buffer.alloc(32))).toEqual(mac);
    p.C_DecryptInit(session, cbc, aes);
    p.C_VerifyInit(session, hmacMech, hmac);
    const pt = Buffer.concat([p.C_DecryptVerifyUpdate(session, ct.subarray(0, 16), Buffer.alloc(64)), await p.C_DecryptVerifyUpdateAsync(session, ct.subarray(16), Buffer.alloc(64)), p.C_DecryptFinal(session, Buffer.alloc(16))]);
    expect(pt).toEqual(data);
    expect(p.C_VerifyFinal(session, mac)).toBe(true);
  });

  it('keeps PKCS#11 rules: both operations initialised, output that fits, the TypeErrors of pkcs11js', async () => {
    expect(ckrOf(() => p.C_DigestEncryptUpdate(session, data, Buffer.alloc(64)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
    p.C_DigestInit(session, sha256);
    // Only the digest is open: the encryption is missing, and the digest is left as it was.
    expect(ckrOf(() => p.C_DigestEncryptUpdate(session, data, Buffer.alloc(64)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
    expect(await ckrOfAsync(() => p.C_DecryptDigestUpdateAsync(session, data, Buffer.alloc(64)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
    p.C_DigestUpdate(session, data);
    expect(p.C_DigestFinal(session, Buffer.alloc(32))).toEqual(createHash('sha256').update(data).digest());
    expect(ckrOf(() => p.C_SignEncryptUpdate(bad, data, Buffer.alloc(64)))).toBe('CKR_SESSION_HANDLE_INVALID');
    expect(() => p.C_DigestEncryptUpdate(session, 'x' as unknown as Buffer, Buffer.alloc(8))).toThrow(new TypeError('Argument 1 has wrong type. Should be a Buffer'));
    expect(() => (p.C_DecryptVerifyUpdate as (...a: unknown[]) => unknown)(session, data)).toThrow(new TypeError('Parameters are required. Expected 3 arguments, but received 2.'));
    p.C_DigestInit(session, sha256);
    p.C_EncryptInit(session, cbc, aes);
    expect(ckrOf(() => p.C_DigestEncryptUpdate(session, data, Buffer.alloc(8)))).toBe('CKR_BUFFER_TOO_SMALL');
    p.C_DigestFinal(session, Buffer.alloc(32));
    p.C_EncryptFinal(session, Buffer.alloc(64));
  });
});

describe('random seed, object size, recovery', () => {
  it('takes a seed in each form, with the errors pkcs11js gives on SoftHSM', async () => {
    expect(p.C_SeedRandom(session, randomBytes(32))).toBeUndefined();
    await viaCallback<void>((cb) => (p.C_SeedRandom as (...a: unknown[]) => void)(session, randomBytes(8), cb));
    await p.C_SeedRandomAsync(session, randomBytes(8));
    expect(ckrOf(() => p.C_SeedRandom(session, Buffer.alloc(0)))).toBe('CKR_ARGUMENTS_BAD');
    expect(ckrOf(() => p.C_SeedRandom(bad, randomBytes(8)))).toBe('CKR_SESSION_HANDLE_INVALID');
    expect(() => p.C_SeedRandom(session, 5 as unknown as Buffer)).toThrow(new TypeError('Argument 1 has wrong type. Should be a Buffer'));
    expect(p.C_GenerateRandom(session, Buffer.alloc(16)).length).toBe(16);
  });

  it('gives CK_UNAVAILABLE_INFORMATION for an object size, as pkcs11js on SoftHSM does', async () => {
    expect(p.C_GetObjectSize(session, aes)).toBe(0xffff_ffff);
    expect(await viaCallback<number>((cb) => (p.C_GetObjectSize as (...a: unknown[]) => void)(session, hmac, cb))).toBe(0xffff_ffff);
    expect(await p.C_GetObjectSizeAsync(session, aes)).toBe(0xffff_ffff);
    expect(ckrOf(() => p.C_GetObjectSize(session, bad))).toBe('CKR_OBJECT_HANDLE_INVALID');
    expect(ckrOf(() => p.C_GetObjectSize(bad, aes))).toBe('CKR_SESSION_HANDLE_INVALID');
    expect(() => p.C_GetObjectSize(session, 5 as unknown as Buffer)).toThrow(new TypeError('Argument 1 has wrong type. Should be a Buffer'));
  });

  it('refuses sign and verify with recovery as SoftHSM does: the session checked, then CKR_FUNCTION_NOT_SUPPORTED', async () => {
    const rsa = { mechanism: F.CKM_RSA_PKCS };
    expect(ckrOf(() => p.C_SignRecoverInit(session, rsa, aes))).toBe('CKR_FUNCTION_NOT_SUPPORTED');
    expect(ckrOf(() => p.C_SignRecover(session, Buffer.alloc(8), Buffer.alloc(256)))).toBe('CKR_FUNCTION_NOT_SUPPORTED');
    expect(ckrOf(() => p.C_VerifyRecoverInit(session, rsa, aes))).toBe('CKR_FUNCTION_NOT_SUPPORTED');
    expect(await ckrOfAsync(() => p.C_VerifyRecoverAsync(session, Buffer.alloc(256), Buffer.alloc(256)))).toBe('CKR_FUNCTION_NOT_SUPPORTED');
    await expect(viaCallback((cb) => (p.C_SignRecover as (...a: unknown[]) => void)(session, Buffer.alloc(8), Buffer.alloc(256), cb))).rejects.toThrow('CKR_FUNCTION_NOT_SUPPORTED');
    expect(ckrOf(() => p.C_SignRecoverInit(bad, rsa, aes))).toBe('CKR_SESSION_HANDLE_INVALID');
    expect(() => p.C_SignRecoverInit(session, 5 as unknown as pkcs11js.Mechanism, aes)).toThrow(new TypeError('Argument 1 has wrong type. Should be an Object'));
    expect(() => p.C_VerifyRecover(session, Buffer.alloc(8), 'x' as unknown as Buffer)).toThrow(new TypeError('Argument 2 has wrong type. Should be a Buffer'));
  });

  it('says CKR_CRYPTOKI_NOT_INITIALIZED before C_Initialize, as pkcs11js does', () => {
    const q = new PKCS11(fixture.config());
    expect(ckrOf(() => q.C_GetObjectSize(bad, bad))).toBe('CKR_CRYPTOKI_NOT_INITIALIZED');
    expect(ckrOf(() => q.C_SignRecover(bad, bad, bad))).toBe('CKR_CRYPTOKI_NOT_INITIALIZED');
  });
});
