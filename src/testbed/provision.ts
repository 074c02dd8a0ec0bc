/**
 * Puts the same key on every token of a test bed by importing one known value with
 * C_CreateObject. This is how tests, the demo and the benchmarks get a key that every
 * member holds until key replication through the virtual slot is available; it is a
 * test-bed tool, not a way to manage production keys (the value passes through this
 * process).
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { InvalidArgumentError } from '../errors/ha-error.js';
import { acquireModule, releaseModule } from '../pkcs11/module-registry.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { toRawTemplate, type Pkcs11Attribute } from '../pkcs11/template-codec.js';
import type { TestbedToken } from './softhsm-testbed.js';

/** A key to import on every token. */
export type ProvisionedKey =
  | { readonly kind: 'aes'; readonly label: string; readonly value: Buffer }
  | { readonly kind: 'hmac'; readonly label: string; readonly value: Buffer }
  | { readonly kind: 'ec-p256'; readonly label: string; readonly privateKey: KeyObject }
  | { readonly kind: 'rsa'; readonly label: string; readonly privateKey: KeyObject };

/** The common keys of tests and benchmarks, with fresh random values. */
export function standardKeys(prefix = 'test'): ProvisionedKey[] {
  return [
    { kind: 'aes', label: `${prefix}-aes`, value: randomBytes(32) },
    { kind: 'hmac', label: `${prefix}-hmac`, value: randomBytes(32) },
    { kind: 'ec-p256', label: `${prefix}-ec`, privateKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey },
    { kind: 'rsa', label: `${prefix}-rsa`, privateKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey },
  ];
}

const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');
const b64 = (s: string | undefined): Buffer => Buffer.from(s ?? '', 'base64url');

/** Templates of the objects a key becomes on a token (token objects, private, sensitive). */
export function provisionTemplates(key: ProvisionedKey): Pkcs11Attribute[][] {
  const common = { label: key.label, id: Buffer.from(key.label), token: true } as const;
  switch (key.kind) {
    case 'aes':
      return [toRawTemplate({ ...common, class: 'secretKey', keyType: 'aes', value: key.value, private: true, sensitive: true, extractable: false, encrypt: true, decrypt: true })];
    case 'hmac':
      return [toRawTemplate({ ...common, class: 'secretKey', keyType: 'genericSecret', value: key.value, private: true, sensitive: true, extractable: false, sign: true, verify: true })];
    case 'ec-p256': {
      const jwk = key.privateKey.export({ format: 'jwk' });
      if (jwk.crv !== 'P-256') throw new InvalidArgumentError(`ec-p256 key ${key.label} is on curve ${jwk.crv}`);
      const point = Buffer.concat([Buffer.from([0x04, 0x41, 0x04]), b64(jwk.x), b64(jwk.y)]);
      return [
        toRawTemplate({ ...common, class: 'privateKey', keyType: 'ec', ecParams: P256_PARAMS, value: b64(jwk.d), private: true, sensitive: true, extractable: false, sign: true }),
        toRawTemplate({ ...common, class: 'publicKey', keyType: 'ec', ecParams: P256_PARAMS, ecPoint: point, private: false, verify: true }),
      ];
    }
    case 'rsa': {
      const jwk = key.privateKey.export({ format: 'jwk' });
      const raw = (type: number, v: string | undefined): Pkcs11Attribute => ({ type, value: b64(v) });
      return [
        [
          ...toRawTemplate({ ...common, class: 'privateKey', keyType: 'rsa', private: true, sensitive: true, extractable: false, sign: true, decrypt: true }),
          raw(pkcs11js.CKA_MODULUS, jwk.n), raw(pkcs11js.CKA_PUBLIC_EXPONENT, jwk.e), raw(pkcs11js.CKA_PRIVATE_EXPONENT, jwk.d),
          raw(pkcs11js.CKA_PRIME_1, jwk.p), raw(pkcs11js.CKA_PRIME_2, jwk.q), raw(pkcs11js.CKA_EXPONENT_1, jwk.dp),
          raw(pkcs11js.CKA_EXPONENT_2, jwk.dq), raw(pkcs11js.CKA_COEFFICIENT, jwk.qi),
        ],
        [
          ...toRawTemplate({ ...common, class: 'publicKey', keyType: 'rsa', private: false, verify: true, encrypt: true }),
          raw(pkcs11js.CKA_MODULUS, jwk.n), raw(pkcs11js.CKA_PUBLIC_EXPONENT, jwk.e),
        ],
      ];
    }
  }
}

/**
 * Imports `keys` on each of `tokens` (token objects). Uses the process-wide module
 * registry, so it also works while a group holds the same modules.
 */
export function provisionKeys(tokens: readonly TestbedToken[], keys: readonly ProvisionedKey[]): void {
  for (const token of tokens) {
    const module = acquireModule(token.modulePath, token.env, `token ${token.label}`);
    const p = module.pkcs11;
    try {
      const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === token.label);
      if (slot === undefined) throw new InvalidArgumentError(`token ${token.label} not found`);
      const session = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      try {
        try {
          p.C_Login(session, pkcs11js.CKU_USER, token.userPin);
        } catch (error) {
          if ((error as { code?: number }).code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw error;
        }
        for (const key of keys) for (const template of provisionTemplates(key)) p.C_CreateObject(session, template);
      } finally {
        p.C_CloseSession(session);
      }
    } finally {
      releaseModule(module);
    }
  }
}
