/**
 * The arithmetic of taking up AES-CBC, CBC-PAD, ECB and CTR operations from their last block
 * (src/slot/cipher-resume.ts), with node:crypto (OpenSSL's EVP, as SoftHSM2 uses) as the
 * module on both sides: an operation fed in parts drawn by fast-check is cut after any
 * part, taken up by a fresh cipher from the position alone, and must give exactly the
 * one-shot output. The same takeover on real members is in multipart-failover.test.ts.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { CipherPosition, type Resume } from '../../src/slot/cipher-resume.js';

const KEY = randomBytes(32);
const IV = randomBytes(16);

const MODES = [
  { name: 'AES_CBC', ckm: pkcs11js.CKM_AES_CBC, cipher: 'aes-256-cbc', pad: false, iv: true },
  { name: 'AES_CBC_PAD', ckm: pkcs11js.CKM_AES_CBC_PAD, cipher: 'aes-256-cbc', pad: true, iv: true },
  { name: 'AES_ECB', ckm: pkcs11js.CKM_AES_ECB, cipher: 'aes-256-ecb', pad: false, iv: false },
  // A stream: any length; node:crypto counts on all 128 bits of the block.
  { name: 'AES_CTR', ckm: pkcs11js.CKM_AES_CTR, cipher: 'aes-256-ctr', pad: true, iv: true },
] as const;

/** CK_AES_CTR_PARAMS as the raw struct mechanism-parameters.ts makes: a native CK_ULONG (here 8 bytes, little-endian), then the block. */
const ctrParams = (bits: number, block: Buffer): Buffer => {
  const p = Buffer.alloc(8 + 16);
  p.writeBigUInt64LE(BigInt(bits));
  block.copy(p, 8);
  return p;
};
/** The Init parameter of a mode, and the IV node:crypto takes from it. */
const parameterOf = (mode: Mode, iv: Buffer): Buffer => (mode.name === 'AES_CTR' ? ctrParams(128, iv) : iv);
const ivOf = (mode: Mode, parameter: Buffer): Buffer => (mode.name === 'AES_CTR' ? parameter.subarray(8) : parameter);

type Mode = (typeof MODES)[number];
type Kind = 'encrypt' | 'decrypt';

/** A node:crypto cipher standing for a member's module session. */
function session(mode: Mode, kind: Kind, iv: Buffer | null) {
  const c = kind === 'encrypt' ? createCipheriv(mode.cipher, KEY, iv) : createDecipheriv(mode.cipher, KEY, iv);
  return mode.name === 'AES_CTR' ? c : c.setAutoPadding(mode.pad);
}

/** Splits `data` at the given fractions (sorted cut points; empty parts allowed). */
function split(data: Buffer, cuts: number[]): Buffer[] {
  const at = cuts.map((f) => Math.floor(f * data.length)).sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let from = 0;
  for (const to of [...at, data.length]) {
    parts.push(data.subarray(from, to));
    from = to;
  }
  return parts;
}

describe('CipherPosition', () => {
  for (const mode of MODES) {
    for (const kind of ['encrypt', 'decrypt'] as const) {
      it(`${mode.name} ${kind}: taken up after any part, from the position alone, gives the one-shot output`, () => {
        fc.assert(
          fc.property(fc.integer({ min: 0, max: 40 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }), fc.nat(), (blocks, cuts, pick) => {
            // The plaintext: whole blocks unless padded; the input of a decryption is its ciphertext.
            const plain = randomBytes(mode.pad ? blocks * 16 + (pick % 16) : blocks * 16);
            const oneShot = (k: Kind, input: Buffer): Buffer => {
              const s = session(mode, k, mode.iv ? IV : null);
              return Buffer.concat([s.update(input), s.final()]);
            };
            const input = kind === 'encrypt' ? plain : oneShot('encrypt', plain);
            const expected = kind === 'encrypt' ? oneShot('encrypt', plain) : plain;
            const parts = split(input, cuts);
            const cutAfter = pick % (parts.length + 1);

            const mechanism = mode.iv ? { mechanism: mode.ckm, parameter: parameterOf(mode, IV) } : { mechanism: mode.ckm };
            const position = CipherPosition.of(kind, mechanism)!;
            const first = session(mode, kind, mode.iv ? IV : null);
            const out: Buffer[] = [];
            for (const part of parts.slice(0, cutAfter)) {
              const o = first.update(part);
              position.advance(part, o);
              out.push(o);
            }
            const resume = position.resume() as Resume;
            expect(typeof resume).toBe('object');
            expect(resume.mechanism.mechanism).toBe(mode.ckm);
            const second = session(mode, kind, mode.iv ? ivOf(mode, resume.mechanism.parameter as Buffer) : null);
            // The bytes fed to take it up give what was returned for them before (CTR), or nothing (they were not answered).
            expect(second.update(resume.feed).equals(resume.expect)).toBe(true);
            for (const part of parts.slice(cutAfter)) out.push(second.update(part));
            out.push(second.final());
            expect(Buffer.concat(out).equals(expected)).toBe(true);
          }),
          { numRuns: 150 },
        );
      });
    }
  }

  it('a CTR counter narrower than the block moves in its own bits, keeps the struct, and never wraps (a reused counter repeats the key stream)', () => {
    const at = (low: string) => Buffer.from(`00112233445566778899aabbccddee${low}`, 'hex');
    const position = CipherPosition.of('encrypt', { mechanism: pkcs11js.CKM_AES_CTR, parameter: ctrParams(8, at('fc')) })!;
    // 2 blocks and 3 bytes answered: the low 8 bits go 0xfc -> 0xfe, the rest stays.
    position.advance(randomBytes(35), randomBytes(35));
    const resume = position.resume() as Resume;
    expect((resume.mechanism.parameter as Buffer).toString('hex')).toBe(ctrParams(8, at('fe')).toString('hex'));
    expect(resume.feed).toHaveLength(3);
    expect(resume.expect).toHaveLength(3);
    // 2 more blocks would take it to 0x100: the typed restart error instead.
    position.advance(randomBytes(32), randomBytes(32));
    expect(position.resume()).toMatch(/counter of 8 bits has run out/);
  });

  it('only AES-CBC, CBC-PAD, ECB and CTR encryption and decryption (with a 16-byte IV or CTR block) are taken up this way', () => {
    expect(CipherPosition.of('encrypt', { mechanism: pkcs11js.CKM_AES_GCM, parameter: Buffer.alloc(12) })).toBeUndefined();
    expect(CipherPosition.of('encrypt', { mechanism: pkcs11js.CKM_AES_CTR, parameter: Buffer.alloc(16) })).toBeUndefined();
    expect(CipherPosition.of('sign', { mechanism: pkcs11js.CKM_AES_CBC, parameter: IV })).toBeUndefined();
    expect(CipherPosition.of('digest', { mechanism: pkcs11js.CKM_SHA256 })).toBeUndefined();
    expect(CipherPosition.of('encrypt', { mechanism: pkcs11js.CKM_AES_CBC, parameter: Buffer.alloc(8) })).toBeUndefined();
    expect(CipherPosition.of('decrypt', { mechanism: pkcs11js.CKM_AES_CBC_PAD, parameter: IV })).toBeDefined();
  });

  it('says why when the module held back more than a resume takes up, or gave output not in whole blocks', () => {
    const position = CipherPosition.of('encrypt', { mechanism: pkcs11js.CKM_AES_CBC, parameter: IV })!;
    // A module that answered 200 bytes with nothing: more than the few blocks kept.
    position.advance(randomBytes(200), Buffer.alloc(0));
    expect(position.resume()).toMatch(/held back 200 bytes/);
    const odd = CipherPosition.of('encrypt', { mechanism: pkcs11js.CKM_AES_ECB })!;
    odd.advance(randomBytes(32), randomBytes(20));
    expect(odd.resume()).toMatch(/not whole blocks/);
  });
});
