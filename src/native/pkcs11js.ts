/**
 * The one place that loads pkcs11js (a CommonJS native addon) into this ESM package.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The pkcs11js module: the `PKCS11` class and every CK* constant. */
export const pkcs11js = require('pkcs11js') as typeof import('pkcs11js');

/**
 * The names of the pkcs11js constants that start with `P`, without `P`:
 * `ConstantName<'CKM_'>` is `'RSA_PKCS_KEY_PAIR_GEN' | 'RSA_PKCS' | ...`.
 */
export type ConstantName<P extends string> = {
  [K in keyof typeof import('pkcs11js')]: K extends `${P}${infer Rest}` ? Rest : never;
}[keyof typeof import('pkcs11js')];

/**
 * Every numeric pkcs11js constant whose name starts with `prefix`, as name without the
 * prefix -> value, in the order pkcs11js defines them (aliases keep their own entries).
 * @example constantsWithPrefix('CKM_').get('AES_GCM') === pkcs11js.CKM_AES_GCM
 */
export function constantsWithPrefix<P extends string>(prefix: P): ReadonlyMap<ConstantName<P>, number> {
  const out = new Map<ConstantName<P>, number>();
  for (const [name, value] of Object.entries(pkcs11js)) {
    if (name.startsWith(prefix) && typeof value === 'number') out.set(name.slice(prefix.length) as ConstantName<P>, value);
  }
  return out;
}
