/**
 * runCommand's attribute reads on a real SoftHSM2 token: reading a list that holds types
 * an object lacks (or hides) must give exactly what reading each type alone gives, whether
 * the kind's types were learned from an earlier object or not, and whatever the order of
 * sensitive and non-sensitive objects of one kind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireModule, releaseModule, type LoadedModule } from '../../src/pkcs11/module-registry.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { runCommand, toWireError } from '../../src/pkcs11/run-command.js';
import type { Handle } from '../../src/pkcs11/commands.js';
import { toMechanism } from '../../src/pkcs11/mechanism-table.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';

let bed: Testbed;
let module: LoadedModule;
let session: Handle;

beforeAll(async () => {
  bed = await createTestbed({ count: 1 });
  const token = bed.tokens[0]!;
  module = acquireModule(token.modulePath, token.env, 'test');
  const p = module.pkcs11;
  const slot = p.C_GetSlotList(true).find((s) => (p.C_GetTokenInfo(s).flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0)!;
  session = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  p.C_Login(session, pkcs11js.CKU_USER, token.userPin);
});
afterAll(async () => {
  if (module) releaseModule(module);
  await bed?.dispose();
});

const read = (object: Handle, types: readonly number[]) => runCommand(module.pkcs11, { op: 'getAttributes', session, object, types });
/** The reference: each type on its own. */
const oneByOne = (object: Handle, types: readonly number[]) => types.map((type) => ({ type, value: read(object, [type])[0]!.value }));

/** A new 32-byte secret key, with the attributes of `template` besides its length. */
const secretKey = (mechanism: 'AES_KEY_GEN' | 'GENERIC_SECRET_KEY_GEN', template: { type: number; value: boolean | string }[]): Handle =>
  runCommand(module.pkcs11, {
    op: 'generateKey',
    session,
    mechanism: toMechanism(mechanism),
    template: [{ type: pkcs11js.CKA_VALUE_LEN, value: 32 }, ...template],
  });

const aesKey = (sensitive: boolean, label: string): Handle =>
  secretKey('AES_KEY_GEN', [
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_SENSITIVE, value: sensitive },
    { type: pkcs11js.CKA_EXTRACTABLE, value: true },
    { type: pkcs11js.CKA_TOKEN, value: false },
  ]);

describe('getAttributes with types an object lacks or hides', () => {
  // CKA_MODULUS and CKA_EC_POINT: no AES key has them; CKA_VALUE: hidden when sensitive.
  const types = [pkcs11js.CKA_CLASS, pkcs11js.CKA_LABEL, pkcs11js.CKA_MODULUS, pkcs11js.CKA_VALUE, pkcs11js.CKA_EC_POINT, pkcs11js.CKA_VALUE_LEN];

  it.each([
    ['a readable key, then a sensitive one', [false, true, false], 0x1234],
    ['a sensitive key, then a readable one', [true, false, true], 0x1235],
  ])('equals reading each type alone: %s', (_name, order, unused) => {
    const list = [...types, unused]; // a list no other case uses: nothing learned before
    for (const [i, sensitive] of (order as boolean[]).entries()) {
      const key = aesKey(sensitive, `k${i}`);
      const got = read(key, list);
      expect(got).toEqual(oneByOne(key, list));
      const value = got.find((a) => a.type === pkcs11js.CKA_VALUE)!.value;
      expect(value === undefined).toBe(sensitive);
      expect(got.find((a) => a.type === pkcs11js.CKA_MODULUS)!.value).toBeUndefined();
      expect(got.find((a) => a.type === pkcs11js.CKA_LABEL)!.value?.toString()).toBe(`k${i}`);
    }
  });
});

describe('multi-part steps', () => {
  const aes = (): Handle =>
    secretKey('AES_KEY_GEN', [
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
    ]);

  it('a Final gives its whole output however much the token held back (the buffer grows unseen)', () => {
    const key = aes();
    const iv = Buffer.alloc(12, 1);
    const mechanism = toMechanism({ name: 'AES_GCM', iv });
    const data = Buffer.alloc(300_000, 7);
    const ct = runCommand(module.pkcs11, { op: 'encrypt', session, mechanism, key, data });
    runCommand(module.pkcs11, { op: 'decryptInit', session, mechanism, key });
    const held = runCommand(module.pkcs11, { op: 'decryptUpdate', session, data: ct });
    // pending 0: a first guess of 1 KiB for an output of 300 000 bytes.
    const rest = runCommand(module.pkcs11, { op: 'decryptFinal', session, pending: 0 });
    expect(Buffer.concat([held, rest])).toEqual(data);
  });

  it('digest steps, C_DigestKey among them, and a verify Final that answers false for a wrong MAC', () => {
    runCommand(module.pkcs11, { op: 'digestInit', session, mechanism: toMechanism('SHA256') });
    runCommand(module.pkcs11, { op: 'digestUpdate', session, data: Buffer.from('abc') });
    const digest = runCommand(module.pkcs11, { op: 'digestFinal', session });
    expect(digest.toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const key = secretKey('GENERIC_SECRET_KEY_GEN', [
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
    ]);
    runCommand(module.pkcs11, { op: 'signInit', session, mechanism: toMechanism('SHA256_HMAC'), key });
    runCommand(module.pkcs11, { op: 'signUpdate', session, data: Buffer.from('abc') });
    const mac = runCommand(module.pkcs11, { op: 'signFinal', session });
    runCommand(module.pkcs11, { op: 'verifyInit', session, mechanism: toMechanism('SHA256_HMAC'), key });
    runCommand(module.pkcs11, { op: 'verifyUpdate', session, data: Buffer.from('abd') });
    expect(runCommand(module.pkcs11, { op: 'verifyFinal', session, signature: mac })).toBe(false);
    // The false answer ended the operation: a new Init is accepted.
    runCommand(module.pkcs11, { op: 'digestInit', session, mechanism: toMechanism('SHA256') });
    runCommand(module.pkcs11, { op: 'digestUpdateKey', session, key });
    expect(runCommand(module.pkcs11, { op: 'digestFinal', session })).toHaveLength(32);
  });
});

describe('toWireError', () => {
  const fail = (run: () => unknown) => {
    try {
      run();
    } catch (error) {
      return toWireError(error);
    }
    throw new Error('the call did not fail');
  };

  it('names the C_ function that failed, also for the calls where pkcs11js leaves `method` empty (C_Decrypt, C_Encrypt, ...)', () => {
    const mechanism = toMechanism({ name: 'AES_GCM', iv: Buffer.alloc(12) });
    const key = aesKey(true, 'wire-error');
    const sealed = runCommand(module.pkcs11, { op: 'encrypt', session, mechanism, key, data: Buffer.from('x') });
    sealed[0]! ^= 1;
    // SoftHSM's answer to a bad GCM tag, from C_Decrypt (the Init succeeded).
    expect(fail(() => runCommand(module.pkcs11, { op: 'decrypt', session, mechanism, key, data: sealed }))).toEqual({ rv: pkcs11js.CKR_GENERAL_ERROR, fn: 'C_Decrypt', message: 'CKR_GENERAL_ERROR' });
    // The Init itself refused: C_DecryptInit.
    expect(fail(() => runCommand(module.pkcs11, { op: 'decrypt', session, mechanism: toMechanism('SHA256_HMAC'), key, data: sealed }))).toMatchObject({ fn: 'C_DecryptInit' });
    expect(fail(() => runCommand(module.pkcs11, { op: 'encrypt', session, mechanism: toMechanism('ECDSA'), key, data: sealed }))).toMatchObject({ fn: 'C_EncryptInit' });
  });
});
