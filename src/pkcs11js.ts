/**
 * `pkcs11-ha/pkcs11js`: pkcs11js 2.1's API over an HA group, so that code written for
 * pkcs11js (and graphene-pk11 and node-webcrypto-p11 on top of it) runs on the virtual
 * slot unchanged. `PKCS11.load()` takes a group config file (or object); with the
 * environment variable `PKCS11_HA_CONFIG`, any module path means that group. Errors are
 * pkcs11js's own `Pkcs11Error`, and every CK* constant is pkcs11js's.
 *
 * @example
 * import pkcs11js from 'pkcs11-ha/pkcs11js';
 * const p = new pkcs11js.PKCS11();
 * p.load('group.json');
 * p.C_Initialize();
 *
 * @packageDocumentation
 */
import type * as Pkcs11js from 'pkcs11js';
import { pkcs11js } from './native/pkcs11js.js';
import { PKCS11 } from './facade/pkcs11.js';

export { PKCS11 };
export { CONFIG_ENV, LABEL_ENV } from './facade/group-source.js';

/** pkcs11js's own error class for PKCS#11 return codes (`instanceof` holds against pkcs11js). */
export const Pkcs11Error: typeof Pkcs11js.Pkcs11Error = pkcs11js.Pkcs11Error;
/** pkcs11js's own error class for other native failures. */
export const NativeError: typeof Pkcs11js.NativeError = pkcs11js.NativeError;

/** Every pkcs11js constant (CKA_*, CKM_*, CKR_*, ...) and the classes: what requiring pkcs11js gives, with the facade's `PKCS11`. */
const facade: typeof Pkcs11js = { ...pkcs11js, PKCS11: PKCS11 as unknown as typeof Pkcs11js.PKCS11 };
export default facade;
