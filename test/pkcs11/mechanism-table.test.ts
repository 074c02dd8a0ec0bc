import { createCipheriv, createPublicKey, randomBytes, verify, constants as cryptoConstants } from 'node:crypto';
import os from 'node:os';

import { describe, expect, expectTypeOf, it } from 'vitest';

import type { ParameterShape } from '../../src/pkcs11/mechanism-parameters.js';
import {
  mechanismNumber,
  parameterShape,
  toMechanism,
  type FriendlyMechanism,
  type MechanismInput,
  type MechanismName,
  type NoParameterMechanismName,
  type SimpleMechanismName,
} from '../../src/pkcs11/mechanism-table.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { toRawTemplate } from '../../src/pkcs11/template-codec.js';
import { invalid } from './expect-invalid.js';
import { hasSoftHsm, withSoftHsmSession } from './softhsm-session.js';

/** Every CKM_ constant pkcs11js exports, as [name without the prefix, number]. */
const CKM: [string, number][] = Object.entries(pkcs11js)
  .filter((e): e is [string, number] => e[0].startsWith('CKM_') && typeof e[1] === 'number')
  .map(([name, value]) => [name.slice(4), value]);

/** A valid friendly parameter for each shape, to reach every mechanism through its friendly form. */
function sampleFields(shape: ParameterShape): Record<string, unknown> {
  switch (shape.kind) {
    case 'iv':
      return { iv: Buffer.alloc(shape.bytes, 1) };
    case 'optionalIv':
      return { iv: Buffer.alloc(shape.bytes, 2) };
    case 'gcm':
      return { iv: Buffer.alloc(12, 3) };
    case 'ccm':
      return { dataLength: 64, nonce: Buffer.alloc(12, 4), macLength: 16 };
    case 'ctr':
      return { counterBits: 32, counterBlock: Buffer.alloc(16, 5) };
    case 'oaep':
      return { hashAlg: 'SHA256' };
    case 'pss':
      return { hashAlg: shape.hash ?? 'SHA256' };
    case 'ecdh':
      return { publicData: Buffer.alloc(65, 6) };
    case 'macLength':
      return { macLength: 16 };
    case 'raw':
    case 'optionalRaw':
      return { parameter: Buffer.alloc(8, 7) };
  }
}

/** CK_ULONG as pkcs11js passes it on this platform (8 bytes on 64-bit Unix). */
const ULONG_SIZE = process.platform !== 'win32' && /64|s390x/.test(process.arch) ? 8 : 4;

function nativeUlong(n: number): Buffer {
  const b = Buffer.alloc(ULONG_SIZE);
  const le = os.endianness() === 'LE';
  if (ULONG_SIZE === 8) {
    if (le) b.writeBigUInt64LE(BigInt(n));
    else b.writeBigUInt64BE(BigInt(n));
  } else if (le) b.writeUInt32LE(n);
  else b.writeUInt32BE(n);
  return b;
}

describe('the mechanism table', () => {
  it('accepts every CKM_ name pkcs11js exports, mapped to its number', () => {
    expect(CKM.length).toBeGreaterThanOrEqual(290);
    let bare = 0;
    let needing = 0;
    for (const [name, value] of CKM) {
      expect(mechanismNumber(name), name).toBe(value);
      const shape = parameterShape(name);
      // Through the friendly object form, with a valid parameter where one is taken.
      const friendly = { name, ...(shape ? sampleFields(shape) : {}) } as FriendlyMechanism;
      expect(toMechanism(friendly).mechanism, name).toBe(value);
      // By name alone: accepted, unless the parameter has required fields.
      let byName: ReturnType<typeof toMechanism> | undefined;
      try {
        byName = toMechanism(name as MechanismInput);
      } catch {
        byName = undefined;
      }
      if (byName) {
        bare++;
        expect(byName.mechanism, name).toBe(value);
      } else {
        needing++;
        expect(invalid(() => toMechanism(name as MechanismInput)), name).toContain(`mechanism "${name}" needs parameters: pass { name: "${name}", `);
      }
    }
    expect(bare + needing).toBe(CKM.length);
    expect(bare).toBeGreaterThan(100);
    expect(needing).toBeGreaterThan(50);
  });

  it('refuses a parameter for every mechanism that takes none', () => {
    let count = 0;
    for (const [name] of CKM) {
      if (parameterShape(name)) continue;
      count++;
      expect(invalid(() => toMechanism({ name, parameter: Buffer.alloc(8) } as never)), name).toBe(
        `mechanism ${name} takes no parameter: unknown property "parameter"; allowed: name`,
      );
      expect(invalid(() => toMechanism({ name, iv: Buffer.alloc(16) } as never)), name).toMatch(/takes no parameter: unknown property "iv"/);
    }
    expect(count).toBeGreaterThan(100);
    for (const name of ['ECDSA', 'SHA256_HMAC', 'AES_ECB', 'RSA_PKCS', 'EC_KEY_PAIR_GEN', 'SHA256', 'AES_CMAC']) {
      expect(parameterShape(name), name).toBeUndefined();
    }
  });

  it('gives the shapes the mechanisms of the brief take', () => {
    const shapes: Array<[string, ParameterShape]> = [
      ['AES_GCM', { kind: 'gcm' }],
      ['AES_CBC', { kind: 'iv', bytes: 16 }],
      ['AES_CBC_PAD', { kind: 'iv', bytes: 16 }],
      ['AES_CTR', { kind: 'ctr' }],
      ['RSA_PKCS_OAEP', { kind: 'oaep' }],
      ['RSA_PKCS_PSS', { kind: 'pss' }],
      ['SHA1_RSA_PKCS_PSS', { kind: 'pss', hash: 'SHA_1' }],
      ['SHA512_RSA_PKCS_PSS', { kind: 'pss', hash: 'SHA512' }],
      ['ECDH1_DERIVE', { kind: 'ecdh' }],
      ['AES_KEY_WRAP', { kind: 'optionalIv', bytes: 8 }],
      ['AES_KEY_WRAP_PAD', { kind: 'optionalIv', bytes: 8 }],
      ['DES3_CBC', { kind: 'iv', bytes: 8 }],
      ['SHA256_HMAC_GENERAL', { kind: 'macLength' }],
    ];
    for (const [name, shape] of shapes) expect(parameterShape(name), name).toEqual(shape);
  });

  it('types names from the pkcs11js typings', () => {
    expectTypeOf<'AES_CTR'>().toExtend<MechanismName>();
    expectTypeOf<'ECDH1_COFACTOR_DERIVE'>().toExtend<MechanismName>();
    expectTypeOf<'CKM_AES_CTR'>().not.toExtend<MechanismName>();
    expectTypeOf<'ECDSA'>().toExtend<NoParameterMechanismName>();
    expectTypeOf<'AES_GCM'>().not.toExtend<NoParameterMechanismName>();
    expectTypeOf<'ECDSA'>().toExtend<SimpleMechanismName>();
    expectTypeOf<'SHA384_RSA_PKCS_PSS'>().toExtend<SimpleMechanismName>();
    expectTypeOf<'RSA_PKCS_OAEP'>().toExtend<SimpleMechanismName>();
    expectTypeOf<'AES_KEY_WRAP_PAD'>().toExtend<SimpleMechanismName>();
    expectTypeOf<'AES_GCM'>().not.toExtend<SimpleMechanismName>();
    expectTypeOf<'RSA_PKCS_PSS'>().not.toExtend<SimpleMechanismName>();
    expectTypeOf<'AES_CTR'>().not.toExtend<SimpleMechanismName>();
    // @ts-expect-error ECDSA takes no parameter
    const noParameter: FriendlyMechanism = { name: 'ECDSA', iv: Buffer.alloc(16) };
    // @ts-expect-error AES_CTR needs counterBits
    const missing: FriendlyMechanism = { name: 'AES_CTR', counterBlock: Buffer.alloc(16) };
    // @ts-expect-error AES_GCM cannot be given by name alone
    const bareGcm: MechanismInput = 'AES_GCM';
    expect([noParameter, missing, bareGcm]).toHaveLength(3);
  });
});

describe('toMechanism', () => {
  it('accepts CKM numbers', () => {
    expect(toMechanism(pkcs11js.CKM_SHA256)).toEqual({ mechanism: pkcs11js.CKM_SHA256 });
    expect(toMechanism(0x8000_0001)).toEqual({ mechanism: 0x8000_0001 });
  });

  it('maps the common parameterless names', () => {
    const simple: Array<[MechanismInput, number]> = [
      ['SHA256_HMAC', pkcs11js.CKM_SHA256_HMAC],
      ['SHA384_HMAC', pkcs11js.CKM_SHA384_HMAC],
      ['SHA512_HMAC', pkcs11js.CKM_SHA512_HMAC],
      ['ECDSA', pkcs11js.CKM_ECDSA],
      ['SHA256_RSA_PKCS', pkcs11js.CKM_SHA256_RSA_PKCS],
      ['SHA256', pkcs11js.CKM_SHA256],
      ['SHA384', pkcs11js.CKM_SHA384],
      ['SHA512', pkcs11js.CKM_SHA512],
      ['AES_KEY_WRAP_PAD', pkcs11js.CKM_AES_KEY_WRAP_PAD],
      ['AES_KEY_GEN', pkcs11js.CKM_AES_KEY_GEN],
      ['EC_KEY_PAIR_GEN', pkcs11js.CKM_EC_KEY_PAIR_GEN],
      ['RSA_PKCS_KEY_PAIR_GEN', pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN],
      ['GENERIC_SECRET_KEY_GEN', pkcs11js.CKM_GENERIC_SECRET_KEY_GEN],
    ];
    for (const [name, n] of simple) {
      expect(toMechanism(name)).toEqual({ mechanism: n });
      expect(toMechanism({ name } as MechanismInput)).toEqual({ mechanism: n });
    }
  });

  it('gives PSS and OAEP their fixed parameters', () => {
    expect(toMechanism('SHA256_RSA_PKCS_PSS')).toEqual({
      mechanism: pkcs11js.CKM_SHA256_RSA_PKCS_PSS,
      parameter: { type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg: pkcs11js.CKM_SHA256, mgf: pkcs11js.CKG_MGF1_SHA256, saltLen: 32 },
    });
    expect(toMechanism({ name: 'RSA_PKCS_OAEP' })).toEqual({
      mechanism: pkcs11js.CKM_RSA_PKCS_OAEP,
      parameter: { type: pkcs11js.CK_PARAMS_RSA_OAEP, hashAlg: pkcs11js.CKM_SHA_1, mgf: pkcs11js.CKG_MGF1_SHA1, source: 1 },
    });
  });

  it('builds AES_GCM parameters, converting Uint8Array to Buffer', () => {
    const iv = Uint8Array.from(Array.from({ length: 12 }, (_, i) => i));
    const mech = toMechanism({ name: 'AES_GCM', iv });
    expect(mech).toEqual({
      mechanism: pkcs11js.CKM_AES_GCM,
      parameter: { type: pkcs11js.CK_PARAMS_GCM, iv: Buffer.from(iv), ivBits: 96, tagBits: 128 },
    });
    expect(Buffer.isBuffer((mech.parameter as unknown as { iv: unknown }).iv)).toBe(true);
    expect('aad' in (mech.parameter as object)).toBe(false);

    const withAad = toMechanism({ name: 'AES_GCM', iv, aad: Uint8Array.from([7, 7]), tagBits: 96 });
    expect(withAad.parameter).toEqual({
      type: pkcs11js.CK_PARAMS_GCM,
      iv: Buffer.from(iv),
      ivBits: 96,
      tagBits: 96,
      aad: Buffer.from([7, 7]),
    });
    expect(Buffer.isBuffer((withAad.parameter as unknown as { aad: unknown }).aad)).toBe(true);
    // Survives structured clone (what posting to a worker thread does).
    expect(structuredClone(withAad)).toEqual({
      mechanism: pkcs11js.CKM_AES_GCM,
      parameter: { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: 96, tagBits: 96, aad: Uint8Array.from([7, 7]) },
    });
  });

  it('builds AES_CBC_PAD with the IV as parameter', () => {
    const iv = new Uint8Array(16).fill(5);
    const mech = toMechanism({ name: 'AES_CBC_PAD', iv });
    expect(mech).toEqual({ mechanism: pkcs11js.CKM_AES_CBC_PAD, parameter: Buffer.from(iv) });
    expect(Buffer.isBuffer(mech.parameter)).toBe(true);
  });

  it('passes { mechanism, parameter } through, converting Uint8Array', () => {
    expect(toMechanism({ mechanism: pkcs11js.CKM_ECDSA })).toEqual({ mechanism: pkcs11js.CKM_ECDSA });
    expect(toMechanism({ mechanism: 1, parameter: 4 })).toEqual({ mechanism: 1, parameter: 4 });
    const buf = toMechanism({ mechanism: pkcs11js.CKM_AES_CBC, parameter: new Uint8Array(16) });
    expect(Buffer.isBuffer(buf.parameter)).toBe(true);
    const params = toMechanism({
      mechanism: pkcs11js.CKM_ECDH1_DERIVE,
      parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: 1, publicData: Uint8Array.from([4, 1]) },
    });
    expect(params).toEqual({
      mechanism: pkcs11js.CKM_ECDH1_DERIVE,
      parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: 1, publicData: Buffer.from([4, 1]) },
    });
    expect(Buffer.isBuffer((params.parameter as unknown as { publicData: unknown }).publicData)).toBe(true);
  });

  it('rejects bad mechanisms, echoing the name or number but never buffers', () => {
    const bad = (input: unknown): string => invalid(() => toMechanism(input as MechanismInput));
    expect(bad('SHA257')).toMatch(/"SHA257".*did you mean "SHA256"/);
    expect(bad('FOO_BAR_BAZ_QUUX')).toContain('"FOO_BAR_BAZ_QUUX"');
    expect(bad({ name: 'NOPE' })).toContain('"NOPE"');
    expect(bad('AES_GCM')).toMatch(/"AES_GCM" needs parameters/);
    expect(bad(-5)).toContain('-5');
    expect(bad(1.5)).toContain('1.5');
    expect(bad({ mechanism: -7 })).toContain('-7');
    expect(bad({ mechanism: '1' })).toContain('string');
    expect(bad(null)).toContain('null');
    expect(bad({})).toMatch(/"name" or a "mechanism"/);
    expect(bad({ name: 'ECDSA', mechanism: 1 })).toMatch(/both/);
    expect(bad({ name: 'ECDSA', iv: Buffer.alloc(1) })).toMatch(/unknown property "iv"/);
    expect(bad({ mechanism: 1, param: 1 })).toMatch(/unknown property "param"/);
    expect(bad({ mechanism: 1, parameter: 'x' })).toMatch(/parameter must be/);
    expect(bad({ mechanism: 1, parameter: { kdf: 1 } })).toMatch(/parameter\.type/);
    expect(bad({ mechanism: 1, parameter: { type: 999, nested: { a: 1 } } })).toMatch(/parameter\.nested.*object/);
    // pkcs11js crashes on a known parameter type missing a required field: refused up front.
    expect(bad({ mechanism: pkcs11js.CKM_AES_GCM, parameter: { type: pkcs11js.CK_PARAMS_GCM, tagBits: 128 } })).toMatch(/parameter\.iv is required/);
    expect(bad({ mechanism: pkcs11js.CKM_ECDH1_DERIVE, parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: 1 } })).toMatch(/parameter\.publicData is required/);
    expect(bad({ name: 'AES_GCM' })).toMatch(/iv must be/);
    expect(bad({ name: 'AES_GCM', iv: Buffer.alloc(0) })).toMatch(/iv must be/);
    expect(bad({ name: 'AES_GCM', iv: Buffer.alloc(12), tagBits: 100 })).toMatch(/tagBits.*100/);
    expect(bad({ name: 'AES_GCM', iv: Buffer.alloc(12), aad: 'text' })).toMatch(/aad.*string/);
    const secretIv = Buffer.from('deadbeefdeadbeef', 'hex');
    const msg = bad({ name: 'AES_CBC_PAD', iv: secretIv });
    expect(msg).toMatch(/16-byte.*8 bytes/);
    expect(msg).not.toMatch(/dead|beef|222|173/i);
  });

  it('builds AES_CTR as the raw CK_AES_CTR_PARAMS struct: a native CK_ULONG, then the counter block', () => {
    const counterBlock = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
    const mech = toMechanism({ name: 'AES_CTR', counterBits: 32, counterBlock });
    expect(mech).toEqual({ mechanism: pkcs11js.CKM_AES_CTR, parameter: Buffer.concat([nativeUlong(32), Buffer.from(counterBlock)]) });
    if (ULONG_SIZE === 8) expect((mech.parameter as Buffer).length).toBe(24);
  });

  it('builds AES_CBC, the key wraps and the MAC lengths', () => {
    const iv = Buffer.alloc(16, 9);
    expect(toMechanism({ name: 'AES_CBC', iv })).toEqual({ mechanism: pkcs11js.CKM_AES_CBC, parameter: iv });
    expect(toMechanism('AES_KEY_WRAP')).toEqual({ mechanism: pkcs11js.CKM_AES_KEY_WRAP });
    expect(toMechanism({ name: 'AES_KEY_WRAP_PAD' })).toEqual({ mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD });
    expect(toMechanism({ name: 'AES_KEY_WRAP', iv: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]) })).toEqual({
      mechanism: pkcs11js.CKM_AES_KEY_WRAP,
      parameter: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]),
    });
    expect(toMechanism({ name: 'SHA256_HMAC_GENERAL', macLength: 16 })).toEqual({ mechanism: pkcs11js.CKM_SHA256_HMAC_GENERAL, parameter: 16 });
  });

  it('defaults every hashed PSS mechanism to its digest, MGF1 and salt length', () => {
    const cases: Array<[MechanismName, number, number, number]> = [
      ['SHA1_RSA_PKCS_PSS', pkcs11js.CKM_SHA_1, pkcs11js.CKG_MGF1_SHA1, 20],
      ['SHA224_RSA_PKCS_PSS', pkcs11js.CKM_SHA224, pkcs11js.CKG_MGF1_SHA224, 28],
      ['SHA256_RSA_PKCS_PSS', pkcs11js.CKM_SHA256, pkcs11js.CKG_MGF1_SHA256, 32],
      ['SHA384_RSA_PKCS_PSS', pkcs11js.CKM_SHA384, pkcs11js.CKG_MGF1_SHA384, 48],
      ['SHA512_RSA_PKCS_PSS', pkcs11js.CKM_SHA512, pkcs11js.CKG_MGF1_SHA512, 64],
    ];
    for (const [name, hashAlg, mgf, saltLen] of cases) {
      expect(toMechanism(name as MechanismInput).parameter, name).toEqual({ type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg, mgf, saltLen });
    }
    expect(toMechanism({ name: 'RSA_PKCS_PSS', hashAlg: 'SHA384', saltLen: 0 })).toEqual({
      mechanism: pkcs11js.CKM_RSA_PKCS_PSS,
      parameter: { type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg: pkcs11js.CKM_SHA384, mgf: pkcs11js.CKG_MGF1_SHA384, saltLen: 0 },
    });
    expect(toMechanism({ name: 'SHA256_RSA_PKCS_PSS', mgf: 'MGF1_SHA1', saltLen: 20 }).parameter).toEqual({
      type: pkcs11js.CK_PARAMS_RSA_PSS,
      hashAlg: pkcs11js.CKM_SHA256,
      mgf: pkcs11js.CKG_MGF1_SHA1,
      saltLen: 20,
    });
  });

  it('builds OAEP with a chosen digest and label, and ECDH1 with a KDF', () => {
    expect(toMechanism({ name: 'RSA_PKCS_OAEP', hashAlg: 'SHA256', sourceData: Uint8Array.from([1]) }).parameter).toEqual({
      type: pkcs11js.CK_PARAMS_RSA_OAEP,
      hashAlg: pkcs11js.CKM_SHA256,
      mgf: pkcs11js.CKG_MGF1_SHA256,
      source: 1,
      sourceData: Buffer.from([1]),
    });
    const publicData = Uint8Array.from([4, 1, 2]);
    expect(toMechanism({ name: 'ECDH1_DERIVE', publicData })).toEqual({
      mechanism: pkcs11js.CKM_ECDH1_DERIVE,
      parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: Buffer.from(publicData) },
    });
    expect(toMechanism({ name: 'ECDH1_COFACTOR_DERIVE', kdf: 'SHA256_KDF', publicData, sharedData: Buffer.from('x') }).parameter).toEqual({
      type: pkcs11js.CK_PARAMS_EC_DH,
      kdf: pkcs11js.CKD_SHA256_KDF,
      publicData: Buffer.from(publicData),
      sharedData: Buffer.from('x'),
    });
  });

  it('takes a raw parameter by name where no friendly form exists', () => {
    const parameter = { type: pkcs11js.CK_PARAMS_PBE, initVector: Buffer.alloc(8), password: Buffer.from('pw'), salt: Uint8Array.from([1]), iteration: 1000 };
    expect(toMechanism({ name: 'PBE_SHA1_DES3_EDE_CBC', parameter })).toEqual({
      mechanism: pkcs11js.CKM_PBE_SHA1_DES3_EDE_CBC,
      parameter: { ...parameter, salt: Buffer.from([1]) },
    });
    expect(toMechanism('VENDOR_DEFINED')).toEqual({ mechanism: pkcs11js.CKM_VENDOR_DEFINED });
    expect(toMechanism({ name: 'VENDOR_DEFINED', parameter: 7 })).toEqual({ mechanism: pkcs11js.CKM_VENDOR_DEFINED, parameter: 7 });
  });

  it('refuses parameters of the wrong shape with an InvalidArgumentError echoing the value', () => {
    const b = (n: number): Buffer => Buffer.alloc(n, 0xab);
    const cases: Array<[unknown, RegExp]> = [
      [{ name: 'AES_GCM', iv: b(12), tagBits: 136 }, /mechanism AES_GCM: tagBits must be a multiple of 8 in 32\.\.128, received 136/],
      [{ name: 'AES_GCM', iv: b(12), nonce: b(12) }, /AES_GCM: unknown property "nonce"; allowed: name, iv, aad, tagBits/],
      [{ name: 'AES_CBC', iv: b(8) }, /mechanism AES_CBC: iv must be a 16-byte Buffer or Uint8Array, received Buffer of 8 bytes/],
      [{ name: 'AES_CBC', iv: 'x'.repeat(16) }, /AES_CBC: iv must be a 16-byte .*received string$/],
      [{ name: 'AES_CTR', counterBits: 0, counterBlock: b(16) }, /AES_CTR: counterBits must be an integer in 1\.\.128, received 0/],
      [{ name: 'AES_CTR', counterBits: 129, counterBlock: b(16) }, /counterBits.*received 129/],
      [{ name: 'AES_CTR', counterBits: 1.5, counterBlock: b(16) }, /counterBits.*received 1\.5/],
      [{ name: 'AES_CTR', counterBits: 32, counterBlock: b(12) }, /AES_CTR: counterBlock must be a 16-byte Buffer or Uint8Array, received Buffer of 12 bytes/],
      [{ name: 'AES_CTR', counterBits: 32 }, /counterBlock must be .*received undefined/],
      [{ name: 'AES_CCM', dataLength: 1, nonce: b(6), macLength: 16 }, /AES_CCM: nonce must be a 7- to 13-byte .*6 bytes/],
      [{ name: 'AES_CCM', dataLength: 1, nonce: b(12), macLength: 5 }, /AES_CCM: macLength must be an even number in 4\.\.16, received 5/],
      [{ name: 'RSA_PKCS_OAEP', hashAlg: 'SHA-256' }, /RSA_PKCS_OAEP: hashAlg "SHA-256" is unknown; did you mean "SHA256"\?/],
      [{ name: 'RSA_PKCS_OAEP', mgf: 'MGF2_SHA1' }, /RSA_PKCS_OAEP: mgf "MGF2_SHA1" is unknown/],
      [{ name: 'RSA_PKCS_OAEP', source: -1 }, /RSA_PKCS_OAEP: source must be an integer in 0\.\.0xffffffff, received -1/],
      [{ name: 'RSA_PKCS_OAEP', sourceData: 'label' }, /RSA_PKCS_OAEP: sourceData must be a Buffer or Uint8Array, received string/],
      [{ name: 'RSA_PKCS_OAEP', hashAlg: 0x1234 }, /RSA_PKCS_OAEP: mgf is required when hashAlg is not one of SHA_1, SHA224, SHA256, SHA384, SHA512/],
      [{ name: 'SHA256_RSA_PKCS_PSS', hashAlg: 'SHA384' }, /SHA256_RSA_PKCS_PSS: hashAlg must be SHA256 for this mechanism, received "SHA384"/],
      [{ name: 'SHA256_RSA_PKCS_PSS', saltLen: -1 }, /saltLen must be an integer in 0\.\.0xffffffff, received -1/],
      [{ name: 'RSA_PKCS_PSS' }, /RSA_PKCS_PSS: hashAlg is required/],
      [{ name: 'RSA_PKCS_PSS', hashAlg: 0x1234, mgf: 1 }, /RSA_PKCS_PSS: saltLen is required/],
      [{ name: 'ECDH1_DERIVE' }, /ECDH1_DERIVE: publicData must be a non-empty Buffer or Uint8Array, received undefined/],
      [{ name: 'ECDH1_DERIVE', publicData: b(0) }, /publicData must be a non-empty .*0 bytes/],
      [{ name: 'ECDH1_DERIVE', kdf: 'SHA257_KDF', publicData: b(65) }, /kdf "SHA257_KDF" is unknown; did you mean "SHA256_KDF"\?/],
      [{ name: 'ECDH1_DERIVE', kdf: -2, publicData: b(65) }, /kdf must be a name or a CKD_\* number.*received -2/],
      [{ name: 'ECDH1_DERIVE', publicData: b(65), sharedData: b(4) }, /ECDH1_DERIVE: sharedData must be left out when kdf is NULL/],
      [{ name: 'AES_KEY_WRAP', iv: b(4) }, /AES_KEY_WRAP: iv must be a 8-byte Buffer or Uint8Array, received Buffer of 4 bytes/],
      [{ name: 'AES_KEY_WRAP_PAD', iv: b(16) }, /AES_KEY_WRAP_PAD: iv must be a 8-byte .*16 bytes/],
      [{ name: 'SHA256_HMAC_GENERAL', macLength: 0 }, /SHA256_HMAC_GENERAL: macLength must be an integer in 1\.\.0xffffffff, received 0/],
      [{ name: 'PBE_SHA1_DES3_EDE_CBC' }, /PBE_SHA1_DES3_EDE_CBC: parameter is required/],
      [{ name: 'PBE_SHA1_DES3_EDE_CBC', parameter: { type: pkcs11js.CK_PARAMS_PBE } }, /parameter\.initVector is required/],
      [{ name: 'DES3_CBC', iv: b(16) }, /DES3_CBC: iv must be a 8-byte .*16 bytes/],
    ];
    for (const [input, pattern] of cases) {
      const msg = invalid(() => toMechanism(input as MechanismInput));
      expect(msg).toMatch(pattern);
      expect(msg).not.toMatch(/ab|171/i); // never the parameter bytes
    }
    expect(invalid(() => toMechanism('AES_CTR' as MechanismInput))).toBe(
      'mechanism "AES_CTR" needs parameters: pass { name: "AES_CTR", counterBits, counterBlock }',
    );
    expect(invalid(() => toMechanism('RSA_PKCS_PSS' as MechanismInput))).toMatch(/"RSA_PKCS_PSS" needs parameters: pass \{ name: "RSA_PKCS_PSS", hashAlg, mgf\?, saltLen\? \}/);
  });
});

describe.skipIf(!hasSoftHsm)('against a real SoftHSM2 token', () => {
  const aesKey = (pkcs11: import('pkcs11js').PKCS11, session: Buffer, keyBytes: Buffer): Buffer =>
    pkcs11.C_CreateObject(
      session,
      toRawTemplate({ class: 'secretKey', keyType: 'aes', value: keyBytes, encrypt: true, decrypt: true, token: false, extractable: true, sensitive: false }),
    );

  it('encrypts with AES_GCM, AES_CBC_PAD, AES_CBC and AES_CTR as Node does', () => {
    withSoftHsmSession((pkcs11, session) => {
      const keyBytes = randomBytes(32);
      const key = aesKey(pkcs11, session, keyBytes);
      const plaintext = Buffer.from('attack at dawn, with pkcs11-ha!!'); // 32 bytes: whole blocks for AES_CBC
      const encrypt = (mechanism: MechanismInput): Buffer => {
        pkcs11.C_EncryptInit(session, toMechanism(mechanism), key);
        return Buffer.from(pkcs11.C_Encrypt(session, plaintext, Buffer.alloc(plaintext.length + 32)));
      };

      const iv = new Uint8Array(randomBytes(12));
      const gcm = createCipheriv('aes-256-gcm', keyBytes, iv);
      const sealed = encrypt({ name: 'AES_GCM', iv });
      expect(sealed).toEqual(Buffer.concat([gcm.update(plaintext), gcm.final(), gcm.getAuthTag()]));
      pkcs11.C_DecryptInit(session, toMechanism({ name: 'AES_GCM', iv }), key);
      expect(Buffer.from(pkcs11.C_Decrypt(session, sealed, Buffer.alloc(sealed.length)))).toEqual(plaintext);

      const cbcIv = randomBytes(16);
      const pad = createCipheriv('aes-256-cbc', keyBytes, cbcIv);
      expect(encrypt({ name: 'AES_CBC_PAD', iv: cbcIv })).toEqual(Buffer.concat([pad.update(plaintext), pad.final()]));
      const noPad = createCipheriv('aes-256-cbc', keyBytes, cbcIv).setAutoPadding(false);
      expect(encrypt({ name: 'AES_CBC', iv: cbcIv })).toEqual(Buffer.concat([noPad.update(plaintext), noPad.final()]));

      // Low 64 bits zero: the two blocks never carry out of the counter, so Node's 128-bit counter agrees.
      const counterBlock = Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
      const ctr = createCipheriv('aes-256-ctr', keyBytes, counterBlock);
      expect(encrypt({ name: 'AES_CTR', counterBits: 64, counterBlock })).toEqual(Buffer.concat([ctr.update(plaintext), ctr.final()]));
    });
  });

  it('signs with SHA384_RSA_PKCS_PSS by name, verified by Node', () => {
    withSoftHsmSession((pkcs11, session) => {
      const { publicKey, privateKey } = pkcs11.C_GenerateKeyPair(
        session,
        toMechanism('RSA_PKCS_KEY_PAIR_GEN'),
        toRawTemplate({ token: false, verify: true, modulusBits: 2048, publicExponent: 65537 }),
        toRawTemplate({ token: false, sign: true, sensitive: true }),
      );
      const data = Buffer.from('signed through the mechanism table');
      pkcs11.C_SignInit(session, toMechanism('SHA384_RSA_PKCS_PSS'), privateKey);
      const signature = Buffer.from(pkcs11.C_Sign(session, data, Buffer.alloc(256)));
      const [n, e] = pkcs11.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
      const key = createPublicKey({ key: { kty: 'RSA', n: (n?.value as Buffer).toString('base64url'), e: (e?.value as Buffer).toString('base64url') }, format: 'jwk' });
      expect(verify('sha384', data, { key, padding: cryptoConstants.RSA_PKCS1_PSS_PADDING, saltLength: 48 }, signature)).toBe(true);
    });
  });

  it('derives the same secret on both sides with ECDH1_DERIVE', () => {
    withSoftHsmSession((pkcs11, session) => {
      const pair = () =>
        pkcs11.C_GenerateKeyPair(
          session,
          toMechanism('EC_KEY_PAIR_GEN'),
          toRawTemplate({ token: false, curve: 'P-256' }),
          toRawTemplate({ token: false, derive: true, sensitive: true }),
        );
      const a = pair();
      const b = pair();
      // CKA_EC_POINT is a DER OCTET STRING (04 41 ...); ECDH takes the raw point.
      const point = (publicKey: Buffer): Buffer => (pkcs11.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_EC_POINT }])[0]?.value as Buffer).subarray(2);
      const derive = (privateKey: Buffer, peer: Buffer): Buffer => {
        const secret = pkcs11.C_DeriveKey(
          session,
          toMechanism({ name: 'ECDH1_DERIVE', publicData: point(peer) }),
          privateKey,
          toRawTemplate({ class: 'secretKey', keyType: 'genericSecret', valueLen: 32, token: false, sensitive: false, extractable: true }),
        );
        return pkcs11.C_GetAttributeValue(session, secret, [{ type: pkcs11js.CKA_VALUE }])[0]?.value as Buffer;
      };
      const ab = derive(a.privateKey, b.publicKey);
      expect(ab).toHaveLength(32);
      expect(derive(b.privateKey, a.publicKey)).toEqual(ab);
    });
  });
});
