import { createRequire } from 'node:module';
import { describe, it, expect } from 'vitest';
import {
  ClosedError,
  ConfigError,
  HaError,
  InvalidArgumentError,
  InvalidHandleError,
  MemberUnreachableError,
  NoMemberAvailableError,
  Pkcs11Error,
  type FaultClass,
} from '../../src/errors/ha-error.js';
import {
  RETURN_CODE_CLASSES,
  classifyError,
  classifyReturnValue,
  toPkcs11Error,
} from '../../src/errors/classification.js';
import { CKR_VENDOR_DEFINED, RETURN_CODES, ckrName, ckrValue } from '../../src/errors/return-codes.js';

const require = createRequire(import.meta.url);
const pkcs11js = require('pkcs11js') as Record<string, unknown> & {
  PKCS11: new () => { load(path: string): void; C_GetSlotList(tokenPresent?: boolean): unknown; close(): void };
};

const SOFTHSM = '/usr/lib/softhsm/libsofthsm2.so';

const pkcs11jsCodes = Object.entries(pkcs11js).filter(
  (entry): entry is [string, number] => entry[0].startsWith('CKR_') && typeof entry[1] === 'number',
);

describe('return codes', () => {
  it('holds every code pkcs11js exports, with the same number', () => {
    expect(pkcs11jsCodes.length).toBeGreaterThan(80);
    for (const [name, value] of pkcs11jsCodes) expect(RETURN_CODES.get(name)).toBe(value);
  });

  it('adds the v2.40 codes pkcs11js lacks', () => {
    expect(ckrValue('CKR_ACTION_PROHIBITED')).toBe(0x1b);
    expect(ckrValue('CKR_CURVE_NOT_SUPPORTED')).toBe(0x140);
    expect(ckrValue('CKR_VENDOR_DEFINED')).toBe(0x80000000);
    expect(CKR_VENDOR_DEFINED).toBe(0x80000000);
  });

  it('round-trips name and number for every known code', () => {
    for (const [name, value] of RETURN_CODES) {
      expect(ckrName(value)).toBe(name);
      expect(ckrValue(name)).toBe(value);
    }
  });

  it('names unknown and vendor values in hex, and reads the names back', () => {
    expect(ckrName(0xa0)).toBe('CKR_PIN_INCORRECT');
    expect(ckrName(0x80000000)).toBe('CKR_VENDOR_DEFINED');
    expect(ckrName(0x80000123)).toBe('CKR_VENDOR_DEFINED_0x80000123');
    expect(ckrName(0xabc)).toBe('CKR_0x00000abc');
    expect(ckrName(-0x7fffffff)).toBe('CKR_VENDOR_DEFINED_0x80000001'); // a signed CK_RV
    expect(ckrName(1.5)).toBe('CKR_INVALID(1.5)');
    for (const value of [0x80000123, 0xabc, 0xffffffff, 0x1000000000]) {
      expect(ckrValue(ckrName(value))).toBe(value);
    }
    expect(ckrValue('CKR_0x000000a0')).toBeUndefined(); // not the canonical name of 0xa0
    expect(ckrValue('CKR_0x80000001')).toBeUndefined(); // vendor values use the vendor form
    expect(ckrValue('CKR_NO_SUCH_THING')).toBeUndefined();
  });
});

describe('RETURN_CODE_CLASSES', () => {
  it('classifies every CKR_* constant pkcs11js exports (but CKR_OK) with a reason', () => {
    for (const [name] of pkcs11jsCodes) {
      if (name === 'CKR_OK') continue;
      const entry = RETURN_CODE_CLASSES.get(name);
      expect(entry, name).toBeDefined();
      expect(['member', 'caller', 'ambiguous']).toContain(entry?.fault);
      expect(entry?.reason.trim().length, name).toBeGreaterThan(10);
    }
  });

  it('covers exactly the known return codes, without CKR_OK', () => {
    const known = [...RETURN_CODES.keys()].filter((name) => name !== 'CKR_OK').sort();
    expect([...RETURN_CODE_CLASSES.keys()].sort()).toEqual(known);
    expect(RETURN_CODE_CLASSES.has('CKR_OK')).toBe(false);
  });

  const expected: ReadonlyArray<readonly [string, FaultClass]> = [
    // The member cannot serve; another member can.
    ['CKR_DEVICE_REMOVED', 'member'],
    ['CKR_DEVICE_ERROR', 'member'],
    ['CKR_TOKEN_NOT_PRESENT', 'member'],
    ['CKR_TOKEN_NOT_RECOGNIZED', 'member'],
    ['CKR_CRYPTOKI_NOT_INITIALIZED', 'member'],
    ['CKR_SESSION_CLOSED', 'member'],
    ['CKR_SESSION_HANDLE_INVALID', 'member'],
    ['CKR_USER_NOT_LOGGED_IN', 'ambiguous'],
    ['CKR_SESSION_COUNT', 'member'],
    ['CKR_HOST_MEMORY', 'member'],
    ['CKR_SLOT_ID_INVALID', 'member'],
    ['CKR_FIPS_SELF_TEST_FAILED', 'member'],
    // The request is bad on any member.
    ['CKR_ARGUMENTS_BAD', 'caller'],
    ['CKR_MECHANISM_INVALID', 'caller'],
    ['CKR_MECHANISM_PARAM_INVALID', 'caller'],
    ['CKR_FUNCTION_NOT_SUPPORTED', 'caller'],
    ['CKR_ATTRIBUTE_TYPE_INVALID', 'caller'],
    ['CKR_ATTRIBUTE_VALUE_INVALID', 'caller'],
    ['CKR_ATTRIBUTE_READ_ONLY', 'caller'],
    ['CKR_ATTRIBUTE_SENSITIVE', 'caller'],
    ['CKR_KEY_TYPE_INCONSISTENT', 'caller'],
    ['CKR_KEY_SIZE_RANGE', 'caller'],
    ['CKR_KEY_FUNCTION_NOT_PERMITTED', 'caller'],
    ['CKR_KEY_UNEXTRACTABLE', 'caller'],
    ['CKR_DATA_INVALID', 'caller'],
    ['CKR_DATA_LEN_RANGE', 'caller'],
    ['CKR_ENCRYPTED_DATA_INVALID', 'caller'],
    ['CKR_ENCRYPTED_DATA_LEN_RANGE', 'caller'],
    ['CKR_SIGNATURE_INVALID', 'caller'],
    ['CKR_SIGNATURE_LEN_RANGE', 'caller'],
    ['CKR_PIN_INCORRECT', 'caller'],
    ['CKR_PIN_INVALID', 'caller'],
    ['CKR_PIN_LEN_RANGE', 'caller'],
    ['CKR_PIN_EXPIRED', 'caller'],
    ['CKR_PIN_LOCKED', 'caller'],
    ['CKR_TEMPLATE_INCOMPLETE', 'caller'],
    ['CKR_TEMPLATE_INCONSISTENT', 'caller'],
    ['CKR_BUFFER_TOO_SMALL', 'caller'],
    ['CKR_OPERATION_ACTIVE', 'caller'],
    ['CKR_OPERATION_NOT_INITIALIZED', 'caller'],
    ['CKR_USER_ALREADY_LOGGED_IN', 'caller'],
    ['CKR_WRAPPED_KEY_INVALID', 'caller'],
    ['CKR_CURVE_NOT_SUPPORTED', 'caller'],
    // Cannot tell: never fails a member alone.
    ['CKR_GENERAL_ERROR', 'ambiguous'],
    ['CKR_FUNCTION_FAILED', 'ambiguous'],
    ['CKR_DEVICE_MEMORY', 'ambiguous'],
    ['CKR_CANCEL', 'ambiguous'],
    ['CKR_FUNCTION_CANCELED', 'ambiguous'],
    ['CKR_VENDOR_DEFINED', 'ambiguous'],
    ['CKR_KEY_HANDLE_INVALID', 'ambiguous'],
    ['CKR_OBJECT_HANDLE_INVALID', 'ambiguous'],
    ['CKR_TOKEN_WRITE_PROTECTED', 'ambiguous'],
  ];

  it.each(expected)('%s is a %s fault', (name, fault) => {
    expect(RETURN_CODE_CLASSES.get(name)?.fault).toBe(fault);
    const value = ckrValue(name);
    expect(value).toBeDefined();
    const classified = classifyReturnValue(value ?? -1);
    expect(classified.ckr).toBe(name);
    expect(classified.fault).toBe(fault);
    expect(classified.reason).toBe(RETURN_CODE_CLASSES.get(name)?.reason);
  });
});

describe('classifyReturnValue', () => {
  it('calls vendor-defined and unknown codes ambiguous', () => {
    const vendor = classifyReturnValue(0x80000042);
    expect(vendor).toMatchObject({ ckr: 'CKR_VENDOR_DEFINED_0x80000042', fault: 'ambiguous' });
    expect(vendor.reason).toMatch(/vendor/);
    const unknown = classifyReturnValue(0x7777);
    expect(unknown).toMatchObject({ ckr: 'CKR_0x00007777', fault: 'ambiguous' });
    expect(unknown.reason).toMatch(/unknown/);
  });

  it('throws a TypeError for CKR_OK and for values that are no return value', () => {
    expect(() => classifyReturnValue(0)).toThrow(TypeError);
    expect(() => classifyReturnValue(Number.NaN)).toThrow(TypeError);
    expect(() => classifyReturnValue(2.5)).toThrow(TypeError);
  });
});

describe('toPkcs11Error', () => {
  it('converts a real pkcs11js error', () => {
    const module = new pkcs11js.PKCS11();
    module.load(SOFTHSM);
    let thrown: unknown;
    try {
      module.C_GetSlotList(true); // before C_Initialize
    } catch (error) {
      thrown = error;
    } finally {
      module.close();
    }
    expect(thrown).toBeInstanceOf(Error);
    const error = toPkcs11Error(thrown, 'C_GetSlotList', 'hsm-a');
    expect(error).toBeInstanceOf(Pkcs11Error);
    expect(error).toMatchObject({
      code: 'ERR_PKCS11',
      ckr: 'CKR_CRYPTOKI_NOT_INITIALIZED',
      rv: 0x190,
      fn: 'C_GetSlotList',
      member: 'hsm-a',
      fault: 'member',
    });
    expect(error?.message).toBe('C_GetSlotList failed with CKR_CRYPTOKI_NOT_INITIALIZED (0x00000190) on member hsm-a');
    expect(error?.cause).toBe(thrown);
    expect(classifyError(thrown)).toBe('member');
  });

  it('converts a plain object passed across a worker thread, without leaking its fields', () => {
    const error = toPkcs11Error({ code: 0xa0, method: 'C_Login', pin: '1234' }, '', undefined);
    expect(error).toMatchObject({ ckr: 'CKR_PIN_INCORRECT', rv: 0xa0, fn: 'C_Login', member: undefined, fault: 'caller' });
    expect(error?.message).toBe('C_Login failed with CKR_PIN_INCORRECT (0x000000a0)');
    expect(error?.cause).toBeUndefined();
    // A method that is no function name never reaches the message.
    expect(toPkcs11Error({ code: 0xa0, method: 'pin=1234' }, '', 'm')?.message).not.toContain('1234');
    // The explicit function name wins over the object's method.
    expect(toPkcs11Error({ code: 0x32, method: 'C_Sign' }, 'C_SignInit', 'm')?.fn).toBe('C_SignInit');
  });

  it('keeps a vendor code in the name', () => {
    expect(toPkcs11Error({ code: 0x80000001 }, 'C_Sign', 'm')).toMatchObject({
      ckr: 'CKR_VENDOR_DEFINED_0x80000001',
      fault: 'ambiguous',
    });
  });

  it('gives undefined for anything that is no PKCS#11 failure', () => {
    expect(toPkcs11Error(new Error('boom'), 'C_Sign', 'm')).toBeUndefined();
    expect(toPkcs11Error(Object.assign(new Error('socket: 12'), { code: 12 }), 'C_Sign', 'm')).toBeUndefined();
    expect(toPkcs11Error(Object.assign(new Error('ENOENT'), { code: 'ENOENT' }), 'C_Sign', 'm')).toBeUndefined();
    expect(toPkcs11Error({ code: 0 }, 'C_Sign', 'm')).toBeUndefined();
    expect(toPkcs11Error({ code: 1.5 }, 'C_Sign', 'm')).toBeUndefined();
    expect(toPkcs11Error(null, 'C_Sign', 'm')).toBeUndefined();
    expect(toPkcs11Error('CKR_PIN_INCORRECT', 'C_Sign', 'm')).toBeUndefined();
    expect(toPkcs11Error(new InvalidArgumentError('x'), 'C_Sign', 'm')).toBeUndefined();
  });

  it('returns one of our Pkcs11Errors as it is', () => {
    const ours = new Pkcs11Error('CKR_DEVICE_REMOVED', 0x32, 'C_Sign', 'm', 'member');
    expect(toPkcs11Error(ours, 'C_Encrypt', 'other')).toBe(ours);
  });
});

describe('classifyError', () => {
  const cases: ReadonlyArray<readonly [string, unknown, FaultClass]> = [
    ['Pkcs11Error (member)', new Pkcs11Error('CKR_DEVICE_REMOVED', 0x32, 'C_Sign', 'm', 'member'), 'member'],
    ['Pkcs11Error (caller)', new Pkcs11Error('CKR_PIN_INCORRECT', 0xa0, 'C_Login', 'm', 'caller'), 'caller'],
    ['Pkcs11Error (ambiguous)', new Pkcs11Error('CKR_GENERAL_ERROR', 0x5, 'C_Decrypt', 'm', 'ambiguous'), 'ambiguous'],
    ['MemberUnreachableError', new MemberUnreachableError('m', 'connection lost'), 'member'],
    ['HaError ERR_DEADLINE', new HaError('ERR_DEADLINE', 'deadline passed'), 'member'],
    ['plain ERR_DEADLINE', Object.assign(new Error('deadline passed'), { code: 'ERR_DEADLINE' }), 'member'],
    ['InvalidArgumentError', new InvalidArgumentError('bad'), 'caller'],
    ['InvalidHandleError', new InvalidHandleError(42), 'caller'],
    ['ClosedError', new ClosedError('session'), 'ambiguous'],
    ['ConfigError', new ConfigError('members[0]', 'missing'), 'ambiguous'],
    ['NoMemberAvailableError', new NoMemberAvailableError('none'), 'ambiguous'],
    ['raw pkcs11js-like object', { code: 0x30 }, 'member'],
    ['plain Error', new Error('boom'), 'ambiguous'],
    ['string', 'boom', 'ambiguous'],
    ['undefined', undefined, 'ambiguous'],
  ];

  it.each(cases)('%s', (_label, error, fault) => {
    expect(classifyError(error)).toBe(fault);
  });
});
