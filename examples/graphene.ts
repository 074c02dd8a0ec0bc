/**
 * graphene-pk11 on the virtual slot: graphene's own API, unchanged, over the pkcs11js
 * facade (`pkcs11-ha/pkcs11js`) of a group of three SoftHSM2 tokens on member hosts.
 *
 *   npx tsx examples/graphene.ts
 *
 * Makes its own tokens in a temporary directory (needs SoftHSM2) and removes them; exits 0
 * when every step checked out. An application whose code does `Module.load(path)` runs
 * unchanged with `node --import pkcs11-ha/register` and `PKCS11_HA_CONFIG=group.json`; here
 * the facade's PKCS11 is handed to graphene's Module directly. In an application the
 * imports are `pkcs11-ha/pkcs11js` and `pkcs11-ha/testbed`.
 */
import { createHash, createVerify, randomBytes } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { HaGroup } from '../src/index.js';
import { PKCS11 } from '../src/pkcs11js.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';

const bed = await createTestbed({ count: 3, labelPrefix: 'graphene' });
let mod: graphene.Module | undefined;
try {
  await HaGroup.initDomain({ members: bed.memberConfigs() });

  // What `load()` takes: a group config file's JSON (here as an object), no SO PIN in it.
  const lib = new PKCS11();
  lib.load({ members: bed.memberConfigs().map(({ soPin: _so, ...member }) => member) });
  mod = new graphene.Module(lib as never);
  mod.initialize();
  const slots = mod.getSlots(true);
  const slot = slots.items(0);
  console.log(`${slots.length} slot: ${slot.getToken().label.trim()} (serial ${slot.getToken().serialNumber})`);
  const session = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
  session.login(bed.tokens[0]!.userPin);

  // A key made through the slot is replicated to every member before generateKey returns.
  const aes = session.generateKey(graphene.KeyGenMechanism.AES, { keyType: graphene.KeyType.AES, valueLen: 32, label: 'orders', token: true, encrypt: true, decrypt: true });
  const iv = randomBytes(16);
  const data = Buffer.from('order #1234: 3 widgets');
  const cipher = session.createCipher({ name: 'AES_CBC_PAD', params: iv }, aes);
  const sealed = Buffer.concat([cipher.update(data), cipher.final()]);
  const decipher = session.createDecipher({ name: 'AES_CBC_PAD', params: iv }, aes);
  if (!Buffer.concat([decipher.update(sealed), decipher.final()]).equals(data)) throw new Error('AES-CBC round trip gave other bytes');

  const rsa = session.generateKeyPair(
    graphene.KeyGenMechanism.RSA,
    { keyType: graphene.KeyType.RSA, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), token: true, verify: true, label: 'invoices' },
    { keyType: graphene.KeyType.RSA, token: true, sign: true, label: 'invoices' },
  );
  const sign = session.createSign('SHA256_RSA_PKCS', rsa.privateKey);
  sign.update(data);
  const signature = sign.final();
  const modulus = rsa.publicKey.getAttribute({ modulus: null }).modulus!;
  const publicKey = { key: { kty: 'RSA', n: modulus.toString('base64url'), e: 'AQAB' }, format: 'jwk' } as const;
  if (!createVerify('sha256').update(data).verify(publicKey, signature)) throw new Error('node:crypto did not verify the signature');

  const found = session.find({ class: graphene.ObjectClass.SECRET_KEY, label: 'orders' });
  console.log(`found ${found.length} key labelled orders; random: ${session.generateRandom(8).toString('hex')}`);
  console.log(`SHA-256 on the slot matches node:crypto: ${session.createDigest('SHA256').once(data).equals(createHash('sha256').update(data).digest())}`);
  console.log('graphene example: ok');
} finally {
  mod?.finalize();
  await bed.dispose();
}
