/**
 * Multi-part operations through the virtual session on real SoftHSM2 tokens, against
 * node:crypto: for every mechanism the group serves in parts, the multi-part output equals
 * the single-part output equals node:crypto's, with part sizes drawn by fast-check (empty
 * parts, one byte, block-unaligned, larger than the replay bound). And PKCS#11's session
 * rules, whichever member serves.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, createPrivateKey, createPublicKey, randomBytes, sign as nodeSign, constants, type KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ObjectHandle } from '../../src/catalog/catalog.js';
import { HaGroup } from '../../src/group/ha-group.js';
import type { MechanismInput } from '../../src/pkcs11/mechanism-table.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { provisionKeys, standardKeys, type ProvisionedKey } from '../../src/testbed/provision.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';

/** The replay bound per operation in this file: some drawn parts are larger. */
const BOUND = 2048;

let bed: Testbed;
let group: HaGroup;
let session: VirtualSession;
let keys: ProvisionedKey[];
const handle: Record<'aes' | 'hmac' | 'rsa' | 'rsaPub' | 'ec', ObjectHandle> = { aes: 0, hmac: 0, rsa: 0, rsaPub: 0, ec: 0 };
let aesValue: Buffer;
let hmacValue: Buffer;
let rsaKey: KeyObject;

beforeAll(async () => {
  bed = await createTestbed({ count: 2 });
  keys = standardKeys('mp');
  provisionKeys(bed.tokens, keys);
  aesValue = (keys.find((k) => k.kind === 'aes') as { value: Buffer }).value;
  hmacValue = (keys.find((k) => k.kind === 'hmac') as { value: Buffer }).value;
  rsaKey = (keys.find((k) => k.kind === 'rsa') as { privateKey: KeyObject }).privateKey;
  group = await HaGroup.open({ members: bed.memberConfigs(), transport: 'in-process', multipart: 'least-busy', multipartReplay: { operationBytes: BOUND } });
  session = group.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);
  const one = async (template: Record<string, unknown>): Promise<ObjectHandle> => {
    const found = await session.findObjects(template);
    expect(found).toHaveLength(1);
    return found[0]!;
  };
  handle.aes = await one({ label: 'mp-aes' });
  handle.hmac = await one({ label: 'mp-hmac' });
  handle.rsa = await one({ label: 'mp-rsa', class: 'privateKey' });
  handle.rsaPub = await one({ label: 'mp-rsa', class: 'publicKey' });
  handle.ec = await one({ label: 'mp-ec', class: 'privateKey' });
}, 60_000);
afterAll(async () => {
  await group?.close();
  await bed?.dispose();
});

/** Part sizes: empty, one byte, block-unaligned, and larger than the replay bound. */
const partSizes = fc.array(fc.oneof(fc.constant(0), fc.constant(1), fc.integer({ min: 2, max: 100 }), fc.integer({ min: BOUND + 1, max: BOUND + 3000 })), { maxLength: 5 });

/** Splits `data` into parts of the drawn sizes (the rest as a last part). */
function split(data: Buffer, sizes: readonly number[]): Buffer[] {
  const parts: Buffer[] = [];
  let at = 0;
  for (const n of sizes) {
    const part = data.subarray(at, Math.min(data.length, at + n));
    parts.push(part);
    at += part.length;
  }
  parts.push(data.subarray(at));
  return parts;
}

/** Data of the drawn parts' total length, rounded up to `block`. */
const dataFor = (sizes: readonly number[], block = 1): Buffer => {
  const total = sizes.reduce((a, b) => a + b, 0) + 7;
  return randomBytes(Math.ceil(total / block) * block);
};

/** AES-CMAC (RFC 4493) from AES-ECB, for CKM_AES_CMAC. */
function aesCmac(key: Buffer, data: Buffer): Buffer {
  const ecb = (block: Buffer): Buffer => createCipheriv(`aes-${key.length * 8}-ecb`, key, null).setAutoPadding(false).update(block);
  const dbl = (b: Buffer): Buffer => {
    const out = Buffer.alloc(16);
    for (let i = 0; i < 16; i++) out[i] = ((b[i]! << 1) | (i < 15 ? b[i + 1]! >> 7 : 0)) & 0xff;
    if (b[0]! & 0x80) out[15]! ^= 0x87;
    return out;
  };
  const k1 = dbl(ecb(Buffer.alloc(16)));
  const k2 = dbl(k1);
  const n = Math.max(1, Math.ceil(data.length / 16));
  const complete = data.length > 0 && data.length % 16 === 0;
  const last = Buffer.alloc(16);
  data.copy(last, 0, (n - 1) * 16);
  if (!complete) last[data.length - (n - 1) * 16] = 0x80;
  const tail = Buffer.from(last.map((b, i) => b ^ (complete ? k1 : k2)[i]!));
  let x: Buffer = Buffer.alloc(16);
  for (let i = 0; i < n - 1; i++) x = ecb(Buffer.from(data.subarray(i * 16, i * 16 + 16).map((b, j) => b ^ x[j]!)));
  return ecb(Buffer.from(tail.map((b, j) => b ^ x[j]!)));
}

/**
 * @param room given: every Update writes into one buffer of this size, reused from part to
 *   part as a streaming caller does (too small for some parts: they get a buffer of their own)
 */
async function encryptInParts(mechanism: MechanismInput, key: ObjectHandle, parts: Buffer[], kind: 'encrypt' | 'decrypt', room?: number): Promise<Buffer> {
  const out: Buffer[] = [];
  const reused = room === undefined ? undefined : Buffer.alloc(room);
  const kept = (b: Buffer): Buffer => (reused !== undefined && b.buffer === reused.buffer ? Buffer.from(b) : b);
  if (kind === 'encrypt') {
    await session.encryptInit(mechanism, key);
    for (const p of parts) out.push(kept(await session.encryptUpdate(p, reused)));
    out.push(await session.encryptFinal());
  } else {
    await session.decryptInit(mechanism, key);
    for (const p of parts) out.push(kept(await session.decryptUpdate(p, reused)));
    out.push(await session.decryptFinal());
  }
  return Buffer.concat(out);
}

const RUNS = { numRuns: 12 };

describe('multi-part output = single-part output = node:crypto', () => {
  it.each(['SHA_1', 'SHA224', 'SHA256', 'SHA384', 'SHA512'] as const)('digest %s', async (name) => {
    const node = { SHA_1: 'sha1', SHA224: 'sha224', SHA256: 'sha256', SHA384: 'sha384', SHA512: 'sha512' }[name];
    await fc.assert(
      fc.asyncProperty(partSizes, async (sizes) => {
        const data = dataFor(sizes);
        await session.digestInit(name);
        for (const p of split(data, sizes)) await session.digestUpdate(p);
        const multi = await session.digestFinal();
        const expected = createHash(node).update(data).digest();
        expect(multi).toEqual(expected);
        expect(await session.digest(name, data)).toEqual(expected);
      }),
      RUNS,
    );
  });

  it.each(['SHA_1_HMAC', 'SHA224_HMAC', 'SHA256_HMAC'] as const)('sign and verify %s', async (name) => {
    const node = { SHA_1_HMAC: 'sha1', SHA224_HMAC: 'sha224', SHA256_HMAC: 'sha256' }[name];
    await fc.assert(
      fc.asyncProperty(partSizes, async (sizes) => {
        const data = dataFor(sizes);
        await session.signInit(name, handle.hmac);
        for (const p of split(data, sizes)) await session.signUpdate(p);
        const mac = await session.signFinal();
        const expected = createHmac(node, hmacValue).update(data).digest();
        expect(mac).toEqual(expected);
        expect(await session.sign(name, handle.hmac, data)).toEqual(expected);
        await session.verifyInit(name, handle.hmac);
        for (const p of split(data, sizes)) await session.verifyUpdate(p);
        expect(await session.verifyFinal(mac)).toBe(true);
      }),
      RUNS,
    );
  });

  it('AES_CMAC', async () => {
    await fc.assert(
      fc.asyncProperty(partSizes, async (sizes) => {
        const data = dataFor(sizes);
        await session.signInit('AES_CMAC', handle.aes);
        for (const p of split(data, sizes)) await session.signUpdate(p);
        const mac = await session.signFinal();
        expect(mac).toEqual(aesCmac(aesValue, data));
        expect(await session.sign('AES_CMAC', handle.aes, data)).toEqual(mac);
      }),
      RUNS,
    );
  });

  it.each([
    ['AES_CBC', 'aes-256-cbc', 16, false],
    ['AES_CBC_PAD', 'aes-256-cbc', 1, true],
    ['AES_ECB', 'aes-256-ecb', 16, false],
    ['AES_CTR', 'aes-256-ctr', 1, false],
  ] as const)('encrypt and decrypt %s', async (name, cipher, block, padding) => {
    await fc.assert(
      fc.asyncProperty(partSizes, partSizes, async (sizes, decryptSizes) => {
        const data = dataFor(sizes, block);
        const iv = randomBytes(16);
        const mechanism = (name === 'AES_ECB' ? name : name === 'AES_CTR' ? { name, counterBits: 128, counterBlock: iv } : { name, iv }) as MechanismInput;
        const node = createCipheriv(cipher, aesValue, name === 'AES_ECB' ? null : iv).setAutoPadding(padding);
        const expected = Buffer.concat([node.update(data), node.final()]);
        expect(await encryptInParts(mechanism, handle.aes, split(data, sizes), 'encrypt')).toEqual(expected);
        expect(await session.encrypt(mechanism, handle.aes, data)).toEqual(expected);
        expect(await encryptInParts(mechanism, handle.aes, split(expected, decryptSizes), 'decrypt')).toEqual(data);
        expect(await session.decrypt(mechanism, handle.aes, expected)).toEqual(data);
      }),
      RUNS,
    );
  });

  it.each([
    ['AES_CBC', 'aes-256-cbc', 16, false],
    ['AES_CBC_PAD', 'aes-256-cbc', 1, true],
  ] as const)('encrypt and decrypt %s into the caller\'s reused buffer (out), of any size', async (name, cipher, block, padding) => {
    await fc.assert(
      fc.asyncProperty(partSizes, partSizes, fc.integer({ min: 0, max: BOUND + 3100 }), async (sizes, decryptSizes, room) => {
        const data = dataFor(sizes, block);
        const iv = randomBytes(16);
        const node = createCipheriv(cipher, aesValue, iv).setAutoPadding(padding);
        const expected = Buffer.concat([node.update(data), node.final()]);
        expect(await encryptInParts({ name, iv }, handle.aes, split(data, sizes), 'encrypt', room)).toEqual(expected);
        expect(await encryptInParts({ name, iv }, handle.aes, split(expected, decryptSizes), 'decrypt', room)).toEqual(data);
      }),
      RUNS,
    );
  });

  it('encrypt and decrypt AES_GCM with AAD', async () => {
    await fc.assert(
      fc.asyncProperty(partSizes, partSizes, async (sizes, decryptSizes) => {
        const data = dataFor(sizes);
        const iv = randomBytes(12);
        const aad = randomBytes(20);
        const mechanism: MechanismInput = { name: 'AES_GCM', iv, aad, tagBits: 128 };
        const node = createCipheriv('aes-256-gcm', aesValue, iv).setAAD(aad);
        const expected = Buffer.concat([node.update(data), node.final(), node.getAuthTag()]);
        expect(await encryptInParts(mechanism, handle.aes, split(data, sizes), 'encrypt')).toEqual(expected);
        expect(await session.encrypt(mechanism, handle.aes, data)).toEqual(expected);
        expect(await encryptInParts(mechanism, handle.aes, split(expected, decryptSizes), 'decrypt')).toEqual(data);
        const check = createDecipheriv('aes-256-gcm', aesValue, iv).setAAD(aad).setAuthTag(expected.subarray(-16));
        expect(Buffer.concat([check.update(expected.subarray(0, -16)), check.final()])).toEqual(data);
      }),
      RUNS,
    );
  });

  it.each(['SHA256_RSA_PKCS', 'SHA1_RSA_PKCS', 'SHA512_RSA_PKCS'] as const)('sign and verify %s', async (name) => {
    const hash = { SHA256_RSA_PKCS: 'sha256', SHA1_RSA_PKCS: 'sha1', SHA512_RSA_PKCS: 'sha512' }[name];
    await fc.assert(
      fc.asyncProperty(partSizes, async (sizes) => {
        const data = dataFor(sizes);
        await session.signInit(name, handle.rsa);
        for (const p of split(data, sizes)) await session.signUpdate(p);
        const signature = await session.signFinal();
        const expected = nodeSign(hash, data, rsaKey);
        expect(signature).toEqual(expected);
        expect(await session.sign(name, handle.rsa, data)).toEqual(expected);
        await session.verifyInit(name, handle.rsaPub);
        for (const p of split(data, sizes)) await session.verifyUpdate(p);
        expect(await session.verifyFinal(signature)).toBe(true);
      }),
      { numRuns: 6 },
    );
  });

  it('verify SHA256_RSA_PKCS_PSS of a node:crypto signature, and a wrong one as false', async () => {
    await fc.assert(
      fc.asyncProperty(partSizes, async (sizes) => {
        const data = dataFor(sizes);
        const signature = nodeSign('sha256', data, { key: rsaKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
        const verifyParts = async (sig: Buffer): Promise<boolean> => {
          await session.verifyInit({ name: 'SHA256_RSA_PKCS_PSS' }, handle.rsaPub);
          for (const p of split(data, sizes)) await session.verifyUpdate(p);
          return session.verifyFinal(sig);
        };
        expect(await verifyParts(signature)).toBe(true);
        const wrong = Buffer.from(signature);
        wrong[10]! ^= 1;
        expect(await verifyParts(wrong)).toBe(false);
      }),
      { numRuns: 6 },
    );
  });

  it('digestKey: SHA-256 over a secret key, between data parts', async () => {
    const data = randomBytes(100);
    await session.digestInit('SHA256');
    await session.digestUpdate(data.subarray(0, 40));
    await session.digestKey(handle.hmac);
    await session.digestUpdate(data.subarray(40));
    expect(await session.digestFinal()).toEqual(createHash('sha256').update(data.subarray(0, 40)).update(hmacValue).update(data.subarray(40)).digest());
  });
});

describe("PKCS#11's session rules", () => {
  it('a second Init of a kind gives CKR_OPERATION_ACTIVE; other kinds may be open at once; stateless calls go on', async () => {
    await session.digestInit('SHA256');
    await expect(session.digestInit('SHA256')).rejects.toMatchObject({ code: 'ERR_PKCS11', ckr: 'CKR_OPERATION_ACTIVE', fn: 'C_DigestInit' });
    await session.signInit('SHA256_HMAC', handle.hmac);
    await session.digestUpdate(Buffer.from('a'));
    await session.signUpdate(Buffer.from('b'));
    expect(await session.sign('SHA256_HMAC', handle.hmac, Buffer.from('c'))).toEqual(createHmac('sha256', hmacValue).update('c').digest());
    expect(await session.signFinal()).toEqual(createHmac('sha256', hmacValue).update('b').digest());
    expect(await session.digestFinal()).toEqual(createHash('sha256').update('a').digest());
  });

  it('an Update or Final without Init gives CKR_OPERATION_NOT_INITIALIZED', async () => {
    await expect(session.encryptUpdate(Buffer.alloc(16))).rejects.toMatchObject({ ckr: 'CKR_OPERATION_NOT_INITIALIZED', fn: 'C_EncryptUpdate' });
    await expect(session.signFinal()).rejects.toMatchObject({ ckr: 'CKR_OPERATION_NOT_INITIALIZED', fn: 'C_SignFinal' });
    await expect(session.digestKey(handle.aes)).rejects.toMatchObject({ ckr: 'CKR_OPERATION_NOT_INITIALIZED', fn: 'C_DigestKey' });
  });

  it('an error in a step ends the operation, and its session is not given back dirty', async () => {
    await session.encryptInit({ name: 'AES_CBC', iv: randomBytes(16) }, handle.aes);
    await session.encryptUpdate(Buffer.alloc(5));
    // 5 bytes cannot be a CBC ciphertext without padding.
    await expect(session.encryptFinal()).rejects.toMatchObject({ code: 'ERR_PKCS11', ckr: 'CKR_DATA_LEN_RANGE' });
    await expect(session.encryptFinal()).rejects.toMatchObject({ ckr: 'CKR_OPERATION_NOT_INITIALIZED' });
    // Every pooled session is clean: a burst of single-part calls on all of them works.
    const data = randomBytes(64);
    const macs = await Promise.all(Array.from({ length: 40 }, () => session.sign('SHA256_HMAC', handle.hmac, data)));
    expect(new Set(macs.map((m) => m.toString('hex'))).size).toBe(1);
  });

  it('a Final returns its whole result, however much the token held back (AES-GCM decrypt returns everything at the end)', async () => {
    const iv = randomBytes(12);
    const data = randomBytes(200_000);
    const ct = await session.encrypt({ name: 'AES_GCM', iv }, handle.aes, data);
    await session.decryptInit({ name: 'AES_GCM', iv }, handle.aes);
    const out = [await session.decryptUpdate(ct.subarray(0, 100_000)), await session.decryptUpdate(ct.subarray(100_000))];
    out.push(await session.decryptFinal());
    expect(Buffer.concat(out)).toEqual(data);
  });

  it('closing the session ends its open operations on their member (their sessions closed)', async () => {
    const s = group.slot.openSession();
    await s.digestInit('SHA256');
    await s.signInit('SHA256_HMAC', handle.hmac);
    const inUse = () => internalsOf(group).members.reduce((n, m) => n + m.snapshot().sessions.open - m.snapshot().sessions.idle, 0);
    expect(inUse()).toBe(2);
    await s.close();
    // Each was closed after a replacement was opened (closing a token's last session logs out).
    expect(inUse()).toBe(0);
    await expect(s.digestUpdate(Buffer.alloc(1))).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    // No session was given back with an operation open in it: a Init on every one works.
    const all = Array.from({ length: 12 }, () => group.slot.openSession());
    await Promise.all(all.map((x) => x.digestInit('SHA256')));
    await Promise.all(all.map((x) => x.close()));
  });

  it("logout ends this session's open operations", async () => {
    const s = group.slot.openSession();
    await s.digestInit('SHA256');
    await s.logout();
    await expect(s.digestUpdate(Buffer.alloc(1))).rejects.toMatchObject({ ckr: 'CKR_OPERATION_NOT_INITIALIZED' });
    await s.login(bed.tokens[0]!.userPin);
    await s.close();
  });

  it("'least-busy' pins each operation to the least busy holder: concurrent operations spread over the members", async () => {
    const sessions = [group.slot.openSession(), group.slot.openSession()];
    await Promise.all(sessions.map((s) => s.digestInit('SHA256')));
    const busy = internalsOf(group).members.map((m) => m.snapshot().sessions.open - m.snapshot().sessions.idle);
    expect(busy).toEqual([1, 1]);
    for (const s of sessions) {
      await s.digestFinal();
      await s.close();
    }
  });

  it('ECDSA: SoftHSM has no multi-part ECDSA, and says so as PKCS#11 does', async () => {
    await session.signInit('ECDSA', handle.ec);
    await expect(session.signUpdate(randomBytes(32))).rejects.toMatchObject({ code: 'ERR_PKCS11' });
    await expect(session.signFinal()).rejects.toMatchObject({ ckr: 'CKR_OPERATION_NOT_INITIALIZED' });
  });

  it('bad input is refused before any member sees it', async () => {
    await session.digestInit('SHA256');
    await expect(session.digestUpdate('text' as unknown as Buffer)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await session.digestFinal();
    await expect(session.encryptInit('AES_CBC' as MechanismInput, 999_999)).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_/) });
  });
});

// Unused imports guard (createPrivateKey/createPublicKey kept for key conversions if needed).
void createPrivateKey;
void createPublicKey;
