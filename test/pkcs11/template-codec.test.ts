import { createCipheriv, randomBytes } from 'node:crypto';
import os from 'node:os';

import { describe, expect, expectTypeOf, it } from 'vitest';

import { pkcs11js } from '../../src/native/pkcs11js.js';
import { attributeType, type AttributeName, type CurveName, type ObjectClassName } from '../../src/pkcs11/attribute-table.js';
import {
  fromRawAttributes,
  toRawTemplate,
  type FriendlyAttributes,
  type FriendlyTemplate,
  type Pkcs11Attribute,
  type RawTemplate,
  type TemplateInput,
} from '../../src/pkcs11/template-codec.js';
import { invalid } from './expect-invalid.js';
import { hasSoftHsm, withSoftHsmSession } from './softhsm-session.js';

const P256_DER = '06082a8648ce3d030107';
const P384_DER = '06052b81040022';
const P521_DER = '06052b81040023';

/** Encodes a raw attribute the way a token returns it from C_GetAttributeValue. */
function asTokenReturns(attr: Pkcs11Attribute): { type: number; value: Buffer } {
  const { type, value } = attr;
  if (typeof value === 'boolean') return { type, value: Buffer.from([value ? 1 : 0]) };
  if (typeof value === 'number') {
    const b = Buffer.alloc(8);
    if (os.endianness() === 'LE') b.writeBigUInt64LE(BigInt(value));
    else b.writeBigUInt64BE(BigInt(value));
    return { type, value: b };
  }
  if (typeof value === 'string') return { type, value: Buffer.from(value, 'utf8') };
  if (Buffer.isBuffer(value)) return { type, value };
  throw new Error('unexpected value');
}

function ulong(n: number, size: 4 | 8 = 8): Buffer {
  const b = Buffer.alloc(size);
  const le = os.endianness() === 'LE';
  if (size === 8) {
    if (le) b.writeBigUInt64LE(BigInt(n));
    else b.writeBigUInt64BE(BigInt(n));
  } else if (le) b.writeUInt32LE(n);
  else b.writeUInt32BE(n);
  return b;
}

describe('toRawTemplate (friendly)', () => {
  it('converts every field, in class / key type / declaration order', () => {
    const id = Uint8Array.from([1, 2, 3]);
    const value = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const modulus = Buffer.from('c0ffee', 'hex');
    const ecPoint = Buffer.from('0441', 'hex');
    const checkValue = Buffer.from('abcdef', 'hex');
    // Keys deliberately given in a scrambled order.
    const template: FriendlyTemplate = {
      checkValue,
      keyGenMechanism: pkcs11js.CKM_AES_KEY_GEN,
      ecPoint,
      curve: 'P-256',
      modulus,
      publicExponent: 65537,
      modulusBits: 2048,
      value,
      valueLen: 16,
      trusted: false,
      wrapWithTrusted: true,
      derive: false,
      unwrap: true,
      wrap: false,
      verifyRecover: true,
      signRecover: false,
      verify: true,
      sign: false,
      decrypt: true,
      encrypt: false,
      local: true,
      neverExtractable: false,
      alwaysSensitive: true,
      extractable: false,
      sensitive: true,
      destroyable: false,
      copyable: true,
      modifiable: false,
      private: true,
      token: false,
      application: 'app',
      id,
      label: 'my key',
      keyType: 'aes',
      class: 'secretKey',
    };
    expect(toRawTemplate(template)).toEqual([
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_LABEL, value: 'my key' },
      { type: pkcs11js.CKA_ID, value: Buffer.from([1, 2, 3]) },
      { type: pkcs11js.CKA_APPLICATION, value: 'app' },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_MODIFIABLE, value: false },
      { type: pkcs11js.CKA_COPYABLE, value: true },
      { type: pkcs11js.CKA_DESTROYABLE, value: false },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ALWAYS_SENSITIVE, value: true },
      { type: pkcs11js.CKA_NEVER_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_LOCAL, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_SIGN, value: false },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
      { type: pkcs11js.CKA_VERIFY_RECOVER, value: true },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: true },
      { type: pkcs11js.CKA_DERIVE, value: false },
      { type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: true },
      { type: pkcs11js.CKA_TRUSTED, value: false },
      { type: pkcs11js.CKA_VALUE_LEN, value: 16 },
      { type: pkcs11js.CKA_VALUE, value },
      { type: pkcs11js.CKA_MODULUS_BITS, value: 2048 },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
      { type: pkcs11js.CKA_MODULUS, value: modulus },
      { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(P256_DER, 'hex') },
      { type: pkcs11js.CKA_EC_POINT, value: ecPoint },
      { type: pkcs11js.CKA_KEY_GEN_MECHANISM, value: pkcs11js.CKM_AES_KEY_GEN },
      { type: pkcs11js.CKA_CHECK_VALUE, value: checkValue },
    ]);
  });

  it('maps every class and key type name, and passes numbers through', () => {
    const classes: Array<[FriendlyTemplate['class'], number]> = [
      ['secretKey', pkcs11js.CKO_SECRET_KEY],
      ['privateKey', pkcs11js.CKO_PRIVATE_KEY],
      ['publicKey', pkcs11js.CKO_PUBLIC_KEY],
      ['data', pkcs11js.CKO_DATA],
      ['certificate', pkcs11js.CKO_CERTIFICATE],
      [0x8000_0001, 0x8000_0001],
    ];
    for (const [name, n] of classes) {
      expect(toRawTemplate({ class: name })).toEqual([{ type: pkcs11js.CKA_CLASS, value: n }]);
    }
    const keyTypes: Array<[FriendlyTemplate['keyType'], number]> = [
      ['aes', pkcs11js.CKK_AES],
      ['genericSecret', pkcs11js.CKK_GENERIC_SECRET],
      ['rsa', pkcs11js.CKK_RSA],
      ['ec', pkcs11js.CKK_EC],
      ['ecEdwards', 0x40],
      ['ecMontgomery', 0x41],
      ['des3', pkcs11js.CKK_DES3],
      ['dsa', pkcs11js.CKK_DSA],
      ['dh', pkcs11js.CKK_DH],
      ['sha1Hmac', pkcs11js.CKK_SHA_1_HMAC],
      ['sha224Hmac', pkcs11js.CKK_SHA224_HMAC],
      ['sha256Hmac', pkcs11js.CKK_SHA256_HMAC],
      ['sha384Hmac', pkcs11js.CKK_SHA384_HMAC],
      ['sha512Hmac', pkcs11js.CKK_SHA512_HMAC],
      [0x8000_0002, 0x8000_0002],
    ];
    for (const [name, n] of keyTypes) {
      expect(toRawTemplate({ keyType: name })).toEqual([{ type: pkcs11js.CKA_KEY_TYPE, value: n }]);
    }
  });

  it('maps curves to DER OIDs', () => {
    const der = (t: FriendlyTemplate): string => (toRawTemplate(t)[0]?.value as Buffer).toString('hex');
    expect(der({ curve: 'P-256' })).toBe(P256_DER);
    expect(der({ curve: 'P-384' })).toBe(P384_DER);
    expect(der({ curve: 'P-521' })).toBe(P521_DER);
    // curve and ecParams may both be given when they agree: one attribute is emitted.
    expect(toRawTemplate({ curve: 'P-256', ecParams: Buffer.from(P256_DER, 'hex') })).toHaveLength(1);
    expect(invalid(() => toRawTemplate({ curve: 'P-384', ecParams: Buffer.from(P256_DER, 'hex') }))).toMatch(/curve/);
    expect(invalid(() => toRawTemplate({ curve: 'P-999' as never }))).toContain('"P-999"');
  });

  it('encodes string ids as UTF-8 and byte exponents as given', () => {
    expect(toRawTemplate({ id: 'κλειδί' })).toEqual([{ type: pkcs11js.CKA_ID, value: Buffer.from('κλειδί', 'utf8') }]);
    expect(toRawTemplate({ publicExponent: Uint8Array.from([3]) })).toEqual([
      { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([3]) },
    ]);
    expect(toRawTemplate({ publicExponent: 3 })).toEqual([{ type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([3]) }]);
  });

  it('accepts any mechanism name for keyGenMechanism', () => {
    expect(toRawTemplate({ keyGenMechanism: 'EC_KEY_PAIR_GEN' })).toEqual([
      { type: pkcs11js.CKA_KEY_GEN_MECHANISM, value: pkcs11js.CKM_EC_KEY_PAIR_GEN },
    ]);
    expect(toRawTemplate({ keyGenMechanism: 'DES3_KEY_GEN' })).toEqual([
      { type: pkcs11js.CKA_KEY_GEN_MECHANISM, value: pkcs11js.CKM_DES3_KEY_GEN },
    ]);
    expect(invalid(() => toRawTemplate({ keyGenMechanism: 'CKM_AES_KEY_GEN' as never }))).toContain('"CKM_AES_KEY_GEN"');
  });

  it('skips undefined fields and accepts an empty template', () => {
    expect(toRawTemplate({})).toEqual([]);
    expect(toRawTemplate({ label: undefined, token: true })).toEqual([{ type: pkcs11js.CKA_TOKEN, value: true }]);
  });

  it('returns Buffers that are exact-size, unpooled copies of Uint8Array input', () => {
    const bytes = Uint8Array.from([9, 8, 7, 6]);
    const small = Buffer.from('ab', 'hex'); // comes from the shared pool
    const raw = toRawTemplate({ value: bytes, id: small });
    const value = raw.find((a) => a.type === pkcs11js.CKA_VALUE)?.value as Buffer;
    const id = raw.find((a) => a.type === pkcs11js.CKA_ID)?.value as Buffer;
    expect(Buffer.isBuffer(value)).toBe(true);
    expect(value.buffer.byteLength).toBe(4);
    expect(id.buffer.byteLength).toBe(1);
    bytes[0] = 0;
    expect(value[0]).toBe(9);
    const cloned = structuredClone(raw);
    expect(Buffer.from(cloned.find((a) => a.type === pkcs11js.CKA_VALUE)?.value as Uint8Array)).toEqual(value);
  });

  it('rejects unknown keys, naming the key and suggesting the closest', () => {
    expect(invalid(() => toRawTemplate({ lable: 'x' } as FriendlyTemplate))).toMatch(/"lable".*did you mean "label"/);
    expect(invalid(() => toRawTemplate({ CKA_LABEL: 'x' } as FriendlyTemplate))).toMatch(/"CKA_LABEL".*"label"/);
    expect(invalid(() => toRawTemplate({ key_type: 'aes' } as FriendlyTemplate))).toMatch(/"key_type".*"keyType"/);
    const msg = invalid(() => toRawTemplate({ zzzzzzzzzzzz: 1 } as FriendlyTemplate));
    expect(msg).toContain('"zzzzzzzzzzzz"');
    expect(msg).not.toContain('did you mean');
  });

  it('rejects wrongly typed values, echoing the key and the type received', () => {
    const cases: Array<[FriendlyTemplate, string, string]> = [
      [{ label: 5 as never }, 'label', 'number'],
      [{ token: 'yes' as never }, 'token', 'string'],
      [{ valueLen: -1 }, 'valueLen', 'negative'],
      [{ valueLen: 1.5 }, 'valueLen', 'not an integer'],
      [{ modulusBits: 2 ** 33 }, 'modulusBits', 'above'],
      [{ id: 7 as never }, 'id', 'number'],
      [{ modulus: 'ab' as never }, 'modulus', 'string'],
      [{ ecParams: [6, 8] as never }, 'ecParams', 'array'],
      [{ publicExponent: 0 }, 'publicExponent', 'number'],
      [{ class: {} as never }, 'class', 'object'],
      [{ keyType: null as never }, 'keyType', 'null'],
      [{ keyGenMechanism: true as never }, 'keyGenMechanism', 'boolean'],
    ];
    for (const [template, key, type] of cases) {
      const msg = invalid(() => toRawTemplate(template));
      expect(msg).toContain(key);
      expect(msg).toContain(type);
    }
    expect(invalid(() => toRawTemplate({ class: 'secret' as never }))).toMatch(/"secret".*did you mean "secretKey"/);
    expect(invalid(() => toRawTemplate({ keyType: 'blowfish' as never }))).toContain('"blowfish"');
    expect(invalid(() => toRawTemplate({ keyGenMechanism: 'NOPE' as never }))).toContain('"NOPE"');
  });

  it('never echoes the bytes of `value` in an error', () => {
    const secretText = 'TOP-SECRET-KEY-MATERIAL-0123456789';
    const cases: unknown[] = [
      secretText,
      123456789,
      [0xde, 0xad, 0xbe, 0xef],
      { k: secretText },
      new DataView(new ArrayBuffer(4)),
      true,
    ];
    for (const bad of cases) {
      const msg = invalid(() => toRawTemplate({ value: bad as never }));
      expect(msg).toContain('value');
      expect(msg).toContain('<redacted>');
      expect(msg).not.toContain(secretText);
      expect(msg).not.toContain('123456789');
      expect(msg).not.toMatch(/222|173|190|239|dead|beef/i);
    }
    // Raw CKA_VALUE with a bad value type: likewise redacted.
    const raw = invalid(() => toRawTemplate([{ type: pkcs11js.CKA_VALUE, value: { k: secretText } as never }]));
    expect(raw).toContain('<redacted>');
    expect(raw).not.toContain(secretText);
  });

  it('rejects inputs that are neither objects nor arrays', () => {
    for (const bad of [null, undefined, 'label', 5, Buffer.from('x'), new Map()]) {
      expect(invalid(() => toRawTemplate(bad as unknown as TemplateInput))).toMatch(/template must be/);
    }
  });
});

describe('toRawTemplate (raw)', () => {
  it('passes raw attributes through, converting Uint8Array to Buffer', () => {
    const raw: RawTemplate = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_LABEL, value: 'd' },
      { type: pkcs11js.CKA_VALUE, value: Uint8Array.from([1, 2]) },
      { type: pkcs11js.CKA_ID, value: Buffer.from([3]) },
      { type: 0x8000_1234 },
    ];
    const out = toRawTemplate(raw);
    expect(out).toEqual([
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_LABEL, value: 'd' },
      { type: pkcs11js.CKA_VALUE, value: Buffer.from([1, 2]) },
      { type: pkcs11js.CKA_ID, value: Buffer.from([3]) },
      { type: 0x8000_1234 },
    ]);
    expect(Buffer.isBuffer(out[3]?.value)).toBe(true);
    expect(out).not.toBe(raw);
    expect(out[0]).not.toBe(raw[0]);
    expect(toRawTemplate([])).toEqual([]);
  });

  it('validates each entry', () => {
    const cases: Array<[unknown[], RegExp]> = [
      [[null], /template\[0\] must be an object/],
      [[5], /template\[0\] must be an object.*number/],
      [[{ value: 1 }], /template\[0\]\.type.*undefined/],
      [[{ type: '3' }], /template\[0\]\.type.*string/],
      [[{ type: -1 }], /template\[0\]\.type.*negative/],
      [[{ type: 1.5 }], /template\[0\]\.type.*not an integer/],
      [[{ type: 2 ** 32 }], /template\[0\]\.type.*above/],
      [[{ type: 3, value: 'a' }, { type: 3, value: 'b' }], /template\[1\] \(label\).*more than once/],
      [[{ type: 3, value: null }], /template\[0\] \(label\)\.value.*null/],
      [[{ type: 1, value: -2 }], /template\[0\] \(token\)\.value.*negative/],
      [[{ type: 0x8000_0000, value: () => 1 }], /CKA 0x80000000.*function/],
    ];
    for (const [raw, pattern] of cases) {
      expect(invalid(() => toRawTemplate(raw as unknown as RawTemplate))).toMatch(pattern);
    }
  });
});

describe('fromRawAttributes', () => {
  it('decodes booleans, CK_ULONGs, strings and byte strings', () => {
    const ecParams = Buffer.from(P384_DER, 'hex');
    const decoded = fromRawAttributes([
      { type: pkcs11js.CKA_CLASS, value: ulong(pkcs11js.CKO_PRIVATE_KEY) },
      { type: pkcs11js.CKA_KEY_TYPE, value: ulong(pkcs11js.CKK_EC) },
      { type: pkcs11js.CKA_LABEL, value: Buffer.from('ключ', 'utf8') },
      { type: pkcs11js.CKA_ID, value: Buffer.from('0a0b', 'hex') },
      { type: pkcs11js.CKA_TOKEN, value: Buffer.from([1]) },
      { type: pkcs11js.CKA_SENSITIVE, value: Buffer.from([0]) },
      { type: pkcs11js.CKA_SIGN, value: Buffer.from([0xff]) },
      { type: pkcs11js.CKA_EC_PARAMS, value: ecParams },
      { type: pkcs11js.CKA_KEY_GEN_MECHANISM, value: ulong(pkcs11js.CKM_EC_KEY_PAIR_GEN) },
      { type: pkcs11js.CKA_MODULUS_BITS, value: ulong(3072, 4) },
      { type: pkcs11js.CKA_START_DATE, value: Buffer.alloc(0) }, // no friendly name: skipped
    ]);
    expect(decoded).toEqual({
      class: 'privateKey',
      keyType: 'ec',
      label: 'ключ',
      id: Buffer.from('0a0b', 'hex'),
      token: true,
      sensitive: false,
      sign: true,
      ecParams,
      curve: 'P-384',
      keyGenMechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN,
      modulusBits: 3072,
    });
  });

  it('keeps unknown class and key type numbers as numbers', () => {
    expect(
      fromRawAttributes([
        { type: pkcs11js.CKA_CLASS, value: ulong(0x8000_0001) },
        { type: pkcs11js.CKA_KEY_TYPE, value: ulong(0x8000_0002) },
      ]),
    ).toEqual({ class: 0x8000_0001, keyType: 0x8000_0002 });
  });

  it('round-trips a friendly template through the token encoding', () => {
    const original: FriendlyTemplate = {
      class: 'publicKey',
      keyType: 'rsa',
      label: 'rsa pub',
      id: Buffer.from('01', 'hex'),
      application: 'pkcs11-ha',
      token: true,
      private: false,
      modifiable: true,
      copyable: false,
      destroyable: true,
      sensitive: false,
      extractable: true,
      alwaysSensitive: false,
      neverExtractable: false,
      local: true,
      encrypt: true,
      decrypt: false,
      sign: false,
      verify: true,
      signRecover: false,
      verifyRecover: true,
      wrap: true,
      unwrap: false,
      derive: false,
      wrapWithTrusted: false,
      trusted: true,
      valueLen: 0,
      value: randomBytes(32),
      modulusBits: 2048,
      publicExponent: Buffer.from('010001', 'hex'),
      modulus: randomBytes(256),
      ecParams: Buffer.from(P521_DER, 'hex'),
      ecPoint: randomBytes(67),
      keyGenMechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN,
      checkValue: Buffer.from('a1b2c3', 'hex'),
    };
    const decoded: FriendlyAttributes = fromRawAttributes(toRawTemplate(original).map(asTokenReturns));
    expect(decoded).toEqual({ ...original, curve: 'P-521' });
    // What was decoded is itself a valid template, and encodes to the same raw form.
    const again: FriendlyTemplate = decoded;
    expect(toRawTemplate(again)).toEqual(toRawTemplate(original));
  });

  it('rejects malformed entries and lengths', () => {
    expect(invalid(() => fromRawAttributes([{ type: pkcs11js.CKA_TOKEN, value: Buffer.from([1, 0]) }]))).toMatch(
      /token.*1-byte CK_BBOOL.*2 bytes/,
    );
    expect(invalid(() => fromRawAttributes([{ type: pkcs11js.CKA_CLASS, value: Buffer.alloc(2) }]))).toMatch(
      /class.*4 or 8 bytes.*2 bytes/,
    );
    expect(invalid(() => fromRawAttributes([{ type: 3 } as never]))).toMatch(/attributes\[0\]/);
    expect(invalid(() => fromRawAttributes('x' as never))).toMatch(/array/);
  });
});

describe('FriendlyTemplate and FriendlyAttributes', () => {
  it('have exactly the keys of the attribute table', () => {
    expectTypeOf<keyof FriendlyTemplate>().toEqualTypeOf<AttributeName>();
    expectTypeOf<keyof FriendlyAttributes>().toEqualTypeOf<AttributeName>();
  });

  it('read back bytes as Buffer, a mechanism as a number, and the rest as written', () => {
    expectTypeOf<FriendlyAttributes['id']>().toEqualTypeOf<Buffer | undefined>();
    expectTypeOf<FriendlyAttributes['value']>().toEqualTypeOf<Buffer | undefined>();
    expectTypeOf<FriendlyAttributes['publicExponent']>().toEqualTypeOf<Buffer | undefined>();
    expectTypeOf<FriendlyAttributes['ecParams']>().toEqualTypeOf<Buffer | undefined>();
    expectTypeOf<FriendlyAttributes['keyGenMechanism']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<FriendlyAttributes['class']>().toEqualTypeOf<ObjectClassName | number | undefined>();
    expectTypeOf<FriendlyAttributes['curve']>().toEqualTypeOf<CurveName | undefined>();
    expectTypeOf<FriendlyAttributes['label']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<FriendlyAttributes['token']>().toEqualTypeOf<boolean | undefined>();
    expectTypeOf<FriendlyAttributes['valueLen']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<FriendlyAttributes>().toExtend<FriendlyTemplate>();
  });
});

describe.skipIf(!hasSoftHsm)('against a real SoftHSM2 token', () => {
  it('creates an AES key from a friendly template and reads it back', () => {
    withSoftHsmSession((pkcs11, session) => {
      const keyBytes = randomBytes(32);
      const key = pkcs11.C_CreateObject(
        session,
        toRawTemplate({
          class: 'secretKey',
          keyType: 'aes',
          label: 'k',
          value: new Uint8Array(keyBytes),
          encrypt: true,
          decrypt: true,
          token: false,
          extractable: true,
          sensitive: false,
        }),
      );

      const names: Array<keyof FriendlyTemplate> = [
        'class',
        'keyType',
        'label',
        'id',
        'value',
        'valueLen',
        'token',
        'private',
        'encrypt',
        'decrypt',
        'sign',
        'sensitive',
        'extractable',
        'local',
        'alwaysSensitive',
        'neverExtractable',
        'checkValue',
      ];
      const read = pkcs11.C_GetAttributeValue(
        session,
        key,
        names.map((name) => ({ type: attributeType(name) })),
      );
      const decoded = fromRawAttributes(read);
      expect(decoded).toMatchObject({
        class: 'secretKey',
        keyType: 'aes',
        label: 'k',
        id: Buffer.alloc(0),
        value: keyBytes,
        valueLen: 32,
        token: false,
        encrypt: true,
        decrypt: true,
        sensitive: false,
        extractable: true,
        local: false,
        alwaysSensitive: false,
        neverExtractable: false,
      });
      // The key check value of an AES key: the first 3 bytes of E(key, 0^128).
      const ecb = createCipheriv('aes-256-ecb', keyBytes, null).update(Buffer.alloc(16));
      expect(decoded.checkValue).toEqual(ecb.subarray(0, 3));
    });
  });
});
