/**
 * node-webcrypto-p11's `Crypto` on the virtual slot: WebCrypto calls (generateKey, sign,
 * verify, encrypt, exportKey, digest) on a group of three SoftHSM2 tokens on member hosts,
 * through a graphene session over the pkcs11js facade. Results are checked with node:crypto.
 *
 *   npx tsx examples/webcrypto.ts
 *
 * Makes its own tokens in a temporary directory (needs SoftHSM2) and removes them; exits 0
 * when every step checked out. An application that builds `new Crypto({ library, slot,
 * pin })` runs unchanged with `node --import pkcs11-ha/register` and
 * `PKCS11_HA_CONFIG=group.json` (slot 0 is the virtual slot).
 */
import { createPublicKey, verify, type webcrypto } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { Crypto } from 'node-webcrypto-p11';
import { HaGroup } from '../src/index.js';
import { PKCS11 } from '../src/pkcs11js.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';

const bed = await createTestbed({ count: 3, labelPrefix: 'webcrypto' });
let mod: graphene.Module | undefined;
try {
  await HaGroup.initDomain({ members: bed.memberConfigs() });
  const lib = new PKCS11();
  lib.load({ members: bed.memberConfigs().map(({ soPin: _so, ...member }) => member) });
  mod = new graphene.Module(lib as never);
  mod.initialize();
  const session = mod.getSlots(0).open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
  const crypto = new Crypto({ session, name: 'pkcs11-ha' } as never);
  await crypto.login(bed.tokens[0]!.userPin);

  const data = Buffer.from('signed on the virtual slot');
  const pair = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const signature = Buffer.from(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, pair.privateKey, data));
  const spki = Buffer.from(await crypto.subtle.exportKey('spki', pair.publicKey));
  const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  if (!verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)) throw new Error('node:crypto did not verify the ECDSA signature');

  const aes = (await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt'])) as webcrypto.CryptoKey;
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, aes, data);
  if (!Buffer.from(await crypto.subtle.decrypt({ name: 'AES-GCM', iv }, aes, sealed)).equals(data)) throw new Error('AES-GCM round trip gave other bytes');

  const digest = Buffer.from(await crypto.subtle.digest('SHA-256', data));
  console.log(`ECDSA P-256 signature verified by node:crypto; AES-GCM round trip; SHA-256 ${digest.toString('hex').slice(0, 16)}...`);
  console.log('webcrypto example: ok');
} finally {
  mod?.finalize();
  await bed.dispose();
}
