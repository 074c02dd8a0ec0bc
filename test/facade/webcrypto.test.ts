/**
 * node-webcrypto-p11's `Crypto` on the group (through a graphene session over the facade),
 * with every result checked against node:crypto.
 */
import { createCipheriv, createHash, createPublicKey, generateKeyPairSync, randomBytes, sign as nodeSign, verify as nodeVerify, webcrypto } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { Crypto } from 'node-webcrypto-p11';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PKCS11 } from '../../src/facade/pkcs11.js';
import { facadeFixture } from './facade-fixture.js';

const fixture = facadeFixture('w');
let mod: graphene.Module;
let crypto: Crypto;

beforeAll(async () => {
  const lib = new PKCS11();
  lib.load(fixture.config());
  mod = new graphene.Module(lib as never);
  mod.initialize();
  const session = mod.getSlots(0).open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
  crypto = new Crypto({ session, name: 'pkcs11-ha' } as never);
  await crypto.login(fixture.userPin);
}, 120_000);

afterAll(() => {
  mod?.finalize();
});

const data = Buffer.from('WebCrypto on the virtual slot');
const spki = async (key: webcrypto.CryptoKey): Promise<Buffer> => Buffer.from(await crypto.subtle.exportKey('spki', key));

describe('node-webcrypto-p11 on the group', () => {
  it('generates ECDSA P-256 keys whose signatures node:crypto verifies', async () => {
    const pair = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const signature = Buffer.from(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, pair.privateKey, data));
    const publicKey = createPublicKey({ key: await spki(pair.publicKey), format: 'der', type: 'spki' });
    expect(nodeVerify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
    expect(await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, pair.publicKey, signature, data)).toBe(true);
    expect(await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, pair.publicKey, signature, Buffer.from('other'))).toBe(false);
  });

  it('generates RSA keys whose PKCS#1 v1.5 signatures node:crypto verifies', async () => {
    const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) };
    const pair = (await crypto.subtle.generateKey(alg, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const signature = Buffer.from(await crypto.subtle.sign('RSASSA-PKCS1-v1_5', pair.privateKey, data));
    const publicKey = createPublicKey({ key: await spki(pair.publicKey), format: 'der', type: 'spki' });
    expect(nodeVerify('sha256', data, publicKey, signature)).toBe(true);
  });

  it('encrypts with AES-GCM as node:crypto does, and decrypts', async () => {
    const raw = randomBytes(32);
    const key = await crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    const iv = randomBytes(12);
    const sealed = Buffer.from(await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, data));
    const gcm = createCipheriv('aes-256-gcm', raw, iv);
    expect(sealed).toEqual(Buffer.concat([gcm.update(data), gcm.final(), gcm.getAuthTag()]));
    expect(Buffer.from(await crypto.subtle.decrypt({ name: 'AES-GCM', iv }, key, sealed))).toEqual(data);
    const generated = (await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt'])) as webcrypto.CryptoKey;
    const again = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, generated, data);
    expect(Buffer.from(await crypto.subtle.decrypt({ name: 'AES-GCM', iv }, generated, again))).toEqual(data);
  });

  it('imports and exports public keys, and verifies signatures made by node:crypto', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = publicKey.export({ format: 'der', type: 'spki' });
    const imported = await crypto.subtle.importKey('spki', der, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']);
    expect(await spki(imported as unknown as webcrypto.CryptoKey)).toEqual(der);
    const signature = nodeSign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    expect(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, imported, signature, data)).toBe(true);
  });

  it('digests as node:crypto does', async () => {
    expect(Buffer.from(await crypto.subtle.digest('SHA-256', data))).toEqual(createHash('sha256').update(data).digest());
  });
});
