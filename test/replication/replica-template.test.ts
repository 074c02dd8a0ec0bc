/** The template helpers that decide how a key is made and replicated (pure functions). */
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { boolValue, isTokenTemplate } from '../../src/replication/replica-template.js';

describe('boolValue and isTokenTemplate', () => {
  it('read a CK_BBOOL given as a boolean, a number or raw bytes', () => {
    expect([true, false, 1, 0, Buffer.from([1]), Buffer.from([0]), Buffer.from([0xff])].map(boolValue)).toEqual([true, false, true, false, true, false, true]);
    // Absent or not a boolean at all: unknown, not false.
    expect([undefined, 'yes', Buffer.alloc(0)].map(boolValue)).toEqual([undefined, undefined, undefined]);
  });

  it('take a raw CKA_TOKEN of one byte as the module does, and default to a session object', () => {
    expect(isTokenTemplate([{ type: pkcs11js.CKA_TOKEN, value: Buffer.from([1]) }])).toBe(true);
    expect(isTokenTemplate([{ type: pkcs11js.CKA_TOKEN, value: true }])).toBe(true);
    expect(isTokenTemplate([{ type: pkcs11js.CKA_TOKEN, value: Buffer.from([0]) }])).toBe(false);
    expect(isTokenTemplate([{ type: pkcs11js.CKA_LABEL, value: 'k' }])).toBe(false);
  });
});
