/**
 * Thousands of tampered ciphertexts (AES-GCM tags and bodies, AES-CBC padding, RSA-OAEP
 * blocks) through a group of three real member hosts: each is refused with a typed
 * Pkcs11Error that names C_Decrypt (or C_DecryptFinal) and is never a member fault, and
 * every member still serves afterwards with no failure counted. SoftHSM answers a bad GCM
 * tag with CKR_GENERAL_ERROR, which must not empty the group (README, "Failover").
 *
 * Fixed seed in CI; FC_RUNS=<n> tampers n ciphertexts of each kind, FC_SEED another seed
 * (test/helpers/fuzz-settings.ts).
 */
import { constants, publicEncrypt, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaError, HaGroup, Pkcs11Error, type ObjectHandle, type VirtualSession } from '../../src/index.js';
import { standardKeys } from '../../src/testbed/provision.js';
import { seededRandom } from '../../src/testing.js';
import { fuzzRuns, fuzzSeed, longRun } from '../helpers/fuzz-settings.js';
import { hostGroups } from '../helpers/host-groups.js';

const KEYS = standardKeys('tamper');
const RSA = KEYS.find((k) => k.kind === 'rsa')!;
const fixture = hostGroups(KEYS, { initDomain: true });
const LIMIT_MS = longRun ? 3_600_000 : 60_000;

describe('tampered ciphertexts fail no member (3 member hosts)', () => {
  let group: HaGroup;
  let session: VirtualSession;
  let aes: ObjectHandle;
  let rsa: ObjectHandle;
  const random = seededRandom(fuzzSeed);
  const int = (n: number): number => Math.floor(random() * n);

  beforeAll(async () => {
    group = await HaGroup.open({ members: fixture.bed.memberConfigs(), recovery: { maxAttempts: 0 } });
    session = group.slot.openSession();
    await session.login(fixture.bed.tokens[0]!.userPin);
    aes = (await session.findObjects({ label: 'tamper-aes', class: 'secretKey' }))[0]!;
    rsa = (await session.findObjects({ label: RSA.label, class: 'privateKey' }))[0]!;
  });
  afterAll(async () => {
    await group?.close();
  });

  /** Counts the refusals by return code; fails on anything but a caller's (or ambiguous) Pkcs11Error of a decryption. */
  async function refused(work: Promise<unknown>, fns: readonly string[], counts: Map<string, number>): Promise<void> {
    const error = await work.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (error === undefined) {
      counts.set('accepted', (counts.get('accepted') ?? 0) + 1);
      return;
    }
    expect(HaError.is(error) && error.code).toBe('ERR_PKCS11');
    const e = error as Pkcs11Error;
    expect(fns).toContain(e.fn);
    expect(e.fault).not.toBe('member');
    counts.set(e.ckr, (counts.get(e.ckr) ?? 0) + 1);
  }

  function expectUnharmed(): void {
    for (const m of group.status().members) expect({ member: m.name, state: m.state.kind, failures: m.failures }).toEqual({ member: m.name, state: 'active', failures: 0 });
  }

  /** Flips one bit, or cuts the text short, or grows it: a tampered copy of `sealed`. */
  function tamper(sealed: Buffer): Buffer {
    const out = Buffer.from(sealed);
    switch (int(4)) {
      case 0: // a bit of the tag (the last 16 bytes for GCM), or the last block
        out[out.length - 1 - int(Math.min(16, out.length))]! ^= 1 << int(8);
        return out;
      case 1: // a bit anywhere
        out[int(out.length)]! ^= 1 << int(8);
        return out;
      case 2: // cut short
        return out.subarray(0, int(out.length));
      default: // a byte more
        return Buffer.concat([out, Buffer.from([int(256)])]);
    }
  }

  it(
    'AES-GCM: tampered tags and bodies, single-part and multi-part, are refused; no member fails',
    async () => {
      const counts = new Map<string, number>();
      const runs = fuzzRuns(1200);
      for (let i = 0; i < runs; i++) {
        const iv = randomBytes(12);
        const plain = randomBytes(int(200));
        const sealed = await session.encrypt({ name: 'AES_GCM', iv }, aes, plain);
        const bad = tamper(sealed);
        if (bad.equals(sealed)) continue;
        if (i % 6 === 0) {
          // Multi-part: the tag is checked at the Final.
          await refused(
            (async () => {
              await session.decryptInit({ name: 'AES_GCM', iv }, aes);
              await session.decryptUpdate(bad);
              return session.decryptFinal();
            })(),
            ['C_DecryptInit', 'C_DecryptUpdate', 'C_DecryptFinal'],
            counts,
          );
        } else {
          await refused(session.decrypt({ name: 'AES_GCM', iv }, aes, bad), ['C_Decrypt'], counts);
        }
      }
      // A tag of 128 bits is never forged by chance.
      expect(counts.get('accepted')).toBeUndefined();
      expect(counts.get('CKR_GENERAL_ERROR') ?? 0).toBeGreaterThan(runs / 2);
      expectUnharmed();
    },
    LIMIT_MS,
  );

  it(
    'AES-CBC-PAD: random and tampered ciphertexts are refused (bad padding) or decrypt to something; no member fails',
    async () => {
      const counts = new Map<string, number>();
      const runs = fuzzRuns(1200);
      for (let i = 0; i < runs; i++) {
        const iv = randomBytes(16);
        const bad = i % 2 === 0 ? randomBytes(16 * (1 + int(8))) : tamper(await session.encrypt({ name: 'AES_CBC_PAD', iv }, aes, randomBytes(int(100))));
        await refused(session.decrypt({ name: 'AES_CBC_PAD', iv }, aes, bad), ['C_Decrypt'], counts);
      }
      // Most are refused; a random last block ending in a valid pad decrypts (about 1 in 256).
      expect([...counts.entries()].filter(([k]) => k !== 'accepted').reduce((n, [, v]) => n + v, 0)).toBeGreaterThan(runs * 0.8);
      expectUnharmed();
    },
    LIMIT_MS,
  );

  it(
    'RSA-OAEP: tampered blocks are refused; no member fails',
    async () => {
      const counts = new Map<string, number>();
      const runs = fuzzRuns(400);
      const publicKey = RSA.kind === 'rsa' ? RSA.privateKey : undefined;
      for (let i = 0; i < runs; i++) {
        const sealed = publicEncrypt({ key: publicKey!, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, randomBytes(1 + int(60)));
        const bad = tamper(sealed);
        await refused(session.decrypt({ name: 'RSA_PKCS_OAEP', hashAlg: 'SHA_1' }, rsa, bad), ['C_Decrypt'], counts);
      }
      expect(counts.get('accepted')).toBeUndefined();
      expectUnharmed();
      // An untampered block still decrypts: the key and the members are fine.
      const plain = randomBytes(32);
      expect(await session.decrypt({ name: 'RSA_PKCS_OAEP', hashAlg: 'SHA_1' }, rsa, publicEncrypt({ key: publicKey!, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plain))).toEqual(plain);
    },
    LIMIT_MS,
  );
});
