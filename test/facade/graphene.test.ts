/**
 * graphene-pk11's own API over the facade, on three member hosts: what an unchanged
 * graphene application does, including a member host killed in the middle of a run.
 */
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PKCS11 } from '../../src/facade/pkcs11.js';
import { facadeFixture, memberHostPids, secretValue } from './facade-fixture.js';
import { until } from '../helpers/until.js';

const fixture = facadeFixture('g');
let mod: graphene.Module | undefined;
let shared: graphene.Session;

/** The session every test works in: one group for the file, opened through graphene. */
const open = (): graphene.Session => shared;

beforeAll(() => {
  const lib = new PKCS11();
  lib.load(fixture.config());
  mod = new graphene.Module(lib as never);
  mod.initialize();
  const slot = mod.getSlots(0);
  shared = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
  shared.login(fixture.userPin);
}, 120_000);

afterAll(() => {
  mod?.finalize();
});

describe('graphene-pk11 over the facade', () => {
  it('sees one slot whose token describes the group', () => {
    open();
    const slots = mod!.getSlots(true);
    expect(slots.length).toBe(1);
    const token = slots.items(0).getToken();
    expect(token.label).toBe('pkcs11-ha');
    expect(token.serialNumber).toMatch(/^[0-9a-f]{16}$/);
    expect(token.flags & graphene.TokenFlag.LOGIN_REQUIRED).toBeTruthy();
    const mechanisms = slots.items(0).getMechanisms();
    const names = Array.from({ length: mechanisms.length }, (_, i) => mechanisms.items(i).name);
    expect(names).toEqual(expect.arrayContaining(['AES_GCM', 'ECDSA', 'SHA256_RSA_PKCS', 'SHA256_HMAC']));
  });

  it('generates AES, RSA and EC keys, streams signatures and ciphers, reads and writes attributes', () => {
    const session = open();
    const aes = session.generateKey(graphene.KeyGenMechanism.AES, { keyType: graphene.KeyType.AES, valueLen: 32, label: 'g-new-aes', token: false, encrypt: true, decrypt: true });
    const iv = randomBytes(16);
    const data = randomBytes(1000);
    const cipher = session.createCipher({ name: 'AES_CBC_PAD', params: iv }, aes);
    const encrypted = Buffer.concat([cipher.update(data.subarray(0, 300)), cipher.update(data.subarray(300)), cipher.final()]);
    const decipher = session.createDecipher({ name: 'AES_CBC_PAD', params: iv }, aes);
    expect(Buffer.concat([decipher.update(encrypted), decipher.final()])).toEqual(data);

    const rsa = session.generateKeyPair(
      graphene.KeyGenMechanism.RSA,
      { keyType: graphene.KeyType.RSA, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), token: false, verify: true },
      { keyType: graphene.KeyType.RSA, token: false, sign: true },
    );
    const sign = session.createSign('SHA256_RSA_PKCS', rsa.privateKey);
    sign.update(data.subarray(0, 500));
    sign.update(data.subarray(500));
    const signature = sign.final();
    const verify = session.createVerify('SHA256_RSA_PKCS', rsa.publicKey);
    verify.update(data);
    expect(verify.final(signature)).toBe(true);
    expect(session.createVerify('SHA256_RSA_PKCS', rsa.publicKey).once(Buffer.from('other'), signature)).toBe(false);

    const ec = session.generateKeyPair(
      graphene.KeyGenMechanism.EC,
      { keyType: graphene.KeyType.EC, paramsEC: graphene.NamedCurve.getByName('secp256r1').value, token: false, verify: true },
      { keyType: graphene.KeyType.EC, token: false, sign: true },
    );
    const digest = createHash('sha256').update(data).digest();
    const ecSignature = session.createSign('ECDSA', ec.privateKey).once(digest);
    expect(ecSignature.length).toBe(64);
    expect(session.createVerify('ECDSA', ec.publicKey).once(digest, ecSignature)).toBe(true);

    expect(aes.getAttribute('label')).toBe('g-new-aes');
    aes.setAttribute('label', 'g-renamed');
    expect(aes.getAttribute('label')).toBe('g-renamed');
    expect(rsa.publicKey.getAttribute({ modulusBits: null }).modulusBits).toBe(2048);
    expect(session.createDigest('SHA256').once(data)).toEqual(digest);
  });

  it('finds provisioned keys whose results match node:crypto, and gives random bytes', () => {
    const session = open();
    const found = session.find({ class: graphene.ObjectClass.SECRET_KEY, label: 'g-hmac' });
    expect(found.length).toBe(1);
    const hmac = found.items(0).toType<graphene.SecretKey>();
    const data = Buffer.from('graphene over the group');
    const mac = session.createSign('SHA256_HMAC', hmac).once(data);
    expect(mac).toEqual(createHmac('sha256', secretValue(fixture.keys, 'hmac')).update(data).digest());
    expect(session.find({ label: 'no-such-key' }).length).toBe(0);
    const random = session.generateRandom(48);
    expect(random.length).toBe(48);
    expect(random.equals(Buffer.alloc(48))).toBe(false);
  });

  it('unwraps a key wrapped outside the group; refuses to wrap a group key under an application key', () => {
    const session = open();
    const kekValue = randomBytes(32);
    const kek = session.create({ class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, value: kekValue, token: false, unwrap: true, wrap: true, encrypt: true, decrypt: true }).toType<graphene.SecretKey>();
    const secret = randomBytes(32);
    const aiv = Buffer.from('a65959a6', 'hex');
    const kw = createCipheriv('id-aes256-wrap-pad', kekValue, aiv);
    const wrapped = Buffer.concat([kw.update(secret), kw.final()]);
    const key = session.unwrapKey('AES_KEY_WRAP_PAD', kek, wrapped, { class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, token: false, encrypt: true, decrypt: true });
    const iv = randomBytes(16);
    const out = session.createCipher({ name: 'AES_CBC_PAD', params: iv }, key).once(Buffer.from('unwrapped'), Buffer.alloc(64));
    const expected = createCipheriv('aes-256-cbc', secret, iv);
    expect(out).toEqual(Buffer.concat([expected.update('unwrapped'), expected.final()]));
    // Keys of the group wrap only under its trusted domain key (README, "Replication and CKA_EXTRACTABLE").
    expect(() => session.wrapKey('AES_KEY_WRAP_PAD', kek, key)).toThrow(/CKR_KEY_NOT_WRAPPABLE|CKR_KEY_UNEXTRACTABLE/);
  });

  it('keeps signing with the same results and no error while a member host is killed', async () => {
    const session = open();
    const hmac = session.find({ class: graphene.ObjectClass.SECRET_KEY, label: 'g-hmac' }).items(0).toType<graphene.SecretKey>();
    const ec = session.find({ class: graphene.ObjectClass.PUBLIC_KEY, label: 'g-ec' }).items(0).toType<graphene.PublicKey>();
    const ecPrivate = session.find({ class: graphene.ObjectClass.PRIVATE_KEY, label: 'g-ec' }).items(0).toType<graphene.PrivateKey>();
    const data = Buffer.from('same answer');
    const reference = session.createSign('SHA256_HMAC', hmac).once(data);
    await until(() => memberHostPids().length === 3, 'three member hosts');
    const [victim] = memberHostPids();
    let errors = 0;
    for (let i = 0; i < 200; i++) {
      if (i === 50) process.kill(victim!, 'SIGKILL');
      try {
        expect(session.createSign('SHA256_HMAC', hmac).once(data)).toEqual(reference);
        const digest = createHash('sha256').update(`${i}`).digest();
        expect(session.createVerify('ECDSA', ec).once(digest, session.createSign('ECDSA', ecPrivate).once(digest))).toBe(true);
      } catch (error) {
        errors++;
        console.error(error);
      }
      if (i % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(errors).toBe(0);
    expect(memberHostPids()).not.toContain(victim);
  });
});
