import { describe, expect, it } from 'vitest';

import { pkcs11js } from '../../src/native/pkcs11js.js';
import {
  ATTRIBUTE_FIELDS,
  ATTRIBUTE_NAMES,
  CURVES,
  KEY_TYPES,
  OBJECT_CLASSES,
  attributeType,
  curveOf,
  fieldByName,
  fieldByType,
} from '../../src/pkcs11/attribute-table.js';
import { invalid } from './expect-invalid.js';

const constants = pkcs11js as unknown as Record<string, number | undefined>;

describe('attribute names', () => {
  it('maps friendly names to CKA numbers and back', () => {
    expect(attributeType('label')).toBe(pkcs11js.CKA_LABEL);
    expect(attributeType('curve')).toBe(pkcs11js.CKA_EC_PARAMS);
    expect(attributeType('ecParams')).toBe(pkcs11js.CKA_EC_PARAMS);
    expect(attributeType('wrapWithTrusted')).toBe(pkcs11js.CKA_WRAP_WITH_TRUSTED);
    expect(ATTRIBUTE_NAMES.get(pkcs11js.CKA_LABEL)).toBe('label');
    expect(ATTRIBUTE_NAMES.get(pkcs11js.CKA_EC_PARAMS)).toBe('ecParams');
    expect(ATTRIBUTE_NAMES.get(pkcs11js.CKA_CLASS)).toBe('class');
    expect(ATTRIBUTE_NAMES.size).toBe(35);
    for (const [type, name] of ATTRIBUTE_NAMES) expect(attributeType(name)).toBe(type);
    expect(invalid(() => attributeType('lable' as never))).toMatch(/"lable".*"label"/);
  });
});

describe('the attribute table', () => {
  it('gives each friendly name the CKA_ constant it spells in camelCase', () => {
    for (const { name, type } of ATTRIBUTE_FIELDS) {
      const constant = name === 'curve' ? 'CKA_EC_PARAMS' : `CKA_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
      expect(constants[constant], `${name} -> ${constant}`).toBe(type);
    }
  });

  it('lists class and key type first, each name once', () => {
    expect(ATTRIBUTE_FIELDS.slice(0, 2).map((f) => f.name)).toEqual(['class', 'keyType']);
    expect(new Set(ATTRIBUTE_FIELDS.map((f) => f.name)).size).toBe(ATTRIBUTE_FIELDS.length);
  });

  it('decodes CKA_EC_PARAMS as ecParams; curve is for writing only', () => {
    expect(fieldByType(pkcs11js.CKA_EC_PARAMS)).toMatchObject({ name: 'ecParams', kind: 'ecParams' });
    expect(fieldByName('curve')).toMatchObject({ type: pkcs11js.CKA_EC_PARAMS, kind: 'curve' });
    expect(fieldByName('nope')).toBeUndefined();
    expect(fieldByType(pkcs11js.CKA_START_DATE)).toBeUndefined();
  });

  it('names object classes, key types and curves', () => {
    expect(OBJECT_CLASSES.get('privateKey')).toBe(pkcs11js.CKO_PRIVATE_KEY);
    expect(KEY_TYPES.get('sha256Hmac')).toBe(pkcs11js.CKK_SHA256_HMAC);
    expect(KEY_TYPES.get('ecEdwards')).toBe(0x40);
    expect([...CURVES.keys()]).toEqual(['P-256', 'P-384', 'P-521']);
    expect(curveOf(Buffer.from('06082a8648ce3d030107', 'hex'))).toBe('P-256');
    expect(curveOf(Buffer.from('06052b81040023', 'hex'))).toBe('P-521');
    expect(curveOf(Buffer.from('06052b8104000a', 'hex'))).toBeUndefined(); // secp256k1: not named here
  });
});
