/**
 * runCommand's attribute reads on a real SoftHSM2 token: reading a list that holds types
 * an object lacks (or hides) must give exactly what reading each type alone gives, whether
 * the kind's types were learned from an earlier object or not, and whatever the order of
 * sensitive and non-sensitive objects of one kind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireModule, releaseModule, type LoadedModule } from '../../src/pkcs11/module-registry.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { runCommand } from '../../src/pkcs11/run-command.js';
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

const aesKey = (sensitive: boolean, label: string): Handle =>
  runCommand(module.pkcs11, {
    op: 'generateKey',
    session,
    mechanism: toMechanism('AES_KEY_GEN'),
    template: [
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_SENSITIVE, value: sensitive },
      { type: pkcs11js.CKA_EXTRACTABLE, value: true },
      { type: pkcs11js.CKA_TOKEN, value: false },
    ],
  });

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
