/**
 * The one place that loads pkcs11js (a CommonJS native addon) into this ESM package.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The pkcs11js module: the `PKCS11` class and every CK* constant. */
export const pkcs11js = require('pkcs11js') as typeof import('pkcs11js');
