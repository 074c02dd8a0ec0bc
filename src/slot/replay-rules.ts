/**
 * Which multi-part operations may be replayed on another member when theirs fails: those
 * whose result does not depend on the member. Decryption, verification and digests always
 * qualify (their result is a function of the inputs and the key); a signature only when
 * the mechanism is deterministic (MACs, RSA PKCS#1 v1.5, RSA-PSS with an empty salt); an
 * encryption unless its padding is random (RSA PKCS#1 v1.5, OAEP). Symmetric ciphers take
 * their IV from the caller, so a replay gives the same bytes; what was already returned is
 * compared with the replay's output anyway.
 */
import type { Mechanism } from 'pkcs11js';
import { pkcs11js } from '../native/pkcs11js.js';

/** The kinds of multi-part operation. */
export type OperationKind = 'encrypt' | 'decrypt' | 'sign' | 'verify' | 'digest';

/** CKM_* number -> name, for the rules below and for error messages. */
const NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(pkcs11js)) {
  if (name.startsWith('CKM_') && typeof value === 'number' && !NAMES.has(value)) NAMES.set(value, name);
}

/** The mechanism's CKM_* name, or its number in hex. */
export function mechanismName(mechanism: Mechanism): string {
  return NAMES.get(mechanism.mechanism) ?? `CKM_0x${mechanism.mechanism.toString(16)}`;
}

/** Signature mechanisms that give the same bytes for the same key and data. */
const DETERMINISTIC_SIGN = /(?:_MAC(?:_GENERAL)?|HMAC(?:_GENERAL)?|CMAC(?:_GENERAL)?|^CKM_RSA_PKCS|_RSA_PKCS|RSA_X_509|RSA_9796)$/;
/** Encryption mechanisms that pad with random bytes. */
const RANDOM_ENCRYPT = /^CKM_RSA_PKCS(?:_OAEP)?$/;

/**
 * Why an operation of `kind` under `mechanism` cannot be replayed on another member, or
 * undefined when it can.
 */
export function unreplayableReason(kind: OperationKind, mechanism: Mechanism): string | undefined {
  const name = mechanismName(mechanism);
  if (kind === 'sign') {
    if (name.includes('PSS')) {
      const saltLen = (mechanism.parameter as { saltLen?: unknown } | undefined)?.saltLen;
      return saltLen === 0 ? undefined : `${name} signs with a random salt`;
    }
    return DETERMINISTIC_SIGN.test(name) ? undefined : `${name} signatures are random`;
  }
  if (kind === 'encrypt' && RANDOM_ENCRYPT.test(name)) return `${name} pads with random bytes`;
  return undefined;
}
