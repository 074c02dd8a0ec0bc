/**
 * Errors as pkcs11js gives them. In the worker, every failure becomes a
 * {@link FacadeFailure} (a PKCS#11 return code whenever there is one that fits); on the
 * caller's side it becomes pkcs11js's own `Pkcs11Error` (so `instanceof` holds against the
 * real pkcs11js), with pkcs11js's message (the CKR_* name) and `code`.
 */
import { HaError, Pkcs11Error as HaPkcs11Error } from '../errors/ha-error.js';
import { ckrValue } from '../errors/return-codes.js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { FacadeFailure } from './facade-protocol.js';

/** A PKCS#11 return code the facade itself gives (not a member's). */
export class FacadeError extends Error {
  constructor(
    readonly ckr: string,
    readonly detail?: string,
  ) {
    super(detail === undefined ? ckr : `${ckr}: ${detail}`);
    this.name = 'FacadeError';
  }
}

/** Functions whose object argument is a key: a bad handle there is `CKR_KEY_HANDLE_INVALID`. */
const KEY_FUNCTIONS = /Init$|^C_(WrapKey|UnwrapKey|DeriveKey|DigestKey)$/;

/** The return code pkcs11-ha's own errors stand for, by their stable code. */
function ckrOfHaError(error: HaError, fn: string): string {
  switch (error.code) {
    case 'ERR_INVALID_HANDLE':
      return KEY_FUNCTIONS.test(fn) ? 'CKR_KEY_HANDLE_INVALID' : 'CKR_OBJECT_HANDLE_INVALID';
    case 'ERR_INVALID_ARGUMENT':
      return /mechanism|parameter|iv\b/i.test(error.message) ? 'CKR_MECHANISM_PARAM_INVALID' : 'CKR_ARGUMENTS_BAD';
    case 'ERR_CLOSED':
      return /session/.test(error.message) ? 'CKR_SESSION_HANDLE_INVALID' : 'CKR_CRYPTOKI_NOT_INITIALIZED';
    case 'ERR_NO_MEMBER':
    case 'ERR_MEMBER_UNREACHABLE':
    case 'ERR_DEADLINE':
      return 'CKR_DEVICE_ERROR';
    case 'ERR_CONFIG':
      return 'CKR_ARGUMENTS_BAD';
    default:
      // ERR_REPLICATION, ERR_DOMAIN, ERR_OPERATION_RESTART, ERR_COMMAND, ERR_JOURNAL, ...
      return 'CKR_FUNCTION_FAILED';
  }
}

/** What a failure in the worker is, as pkcs11js would report it. Never a PIN or key bytes: messages are the library's own. */
export function toFailure(error: unknown, fn: string): FacadeFailure {
  if (error instanceof FacadeError) return pkcs11Failure(error.ckr, error.detail);
  if (error instanceof HaPkcs11Error) return { kind: 'pkcs11', ckr: error.ckr, rv: error.rv, detail: error.message };
  if (HaError.is(error)) return pkcs11Failure(ckrOfHaError(error, fn), `${error.code}: ${error.message}`);
  if (error instanceof TypeError) return { kind: 'type', message: error.message };
  return { kind: 'native', message: error instanceof Error ? error.message : String(error) };
}

/** A failure with a CKR_* name (its number looked up). */
export function pkcs11Failure(ckr: string, detail?: string): FacadeFailure {
  return { kind: 'pkcs11', ckr, rv: ckrValue(ckr) ?? pkcs11js.CKR_GENERAL_ERROR, ...(detail === undefined ? {} : { detail }) };
}

/**
 * The error pkcs11js would throw: its own `Pkcs11Error` (message the CKR_* name, `code` the
 * number, `method` the function), `TypeError`, or its `NativeError`. The group's
 * explanation, when there is one, is kept as `cause`.
 */
export function toPkcs11jsError(failure: FacadeFailure, fn: string): Error {
  if (failure.kind === 'type') return new TypeError(failure.message);
  if (failure.kind === 'native') return new pkcs11js.NativeError(failure.message, fn);
  const error = new pkcs11js.Pkcs11Error(`${failure.ckr}:${failure.rv}`, failure.rv, fn);
  if (failure.detail !== undefined) Object.defineProperty(error, 'cause', { value: new Error(failure.detail), enumerable: false, configurable: true, writable: true });
  return error;
}
