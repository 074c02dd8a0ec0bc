'use strict';
// What `require('pkcs11-ha/pkcs11js')` (and a `require('pkcs11js')` the register hook
// redirects) gets: the facade's ESM entry, loaded with require() of an ES module
// (Node >= 20.19 and 22.12), or from the TypeScript sources when tsx is loaded (a clone).
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const built = join(__dirname, '..', 'dist', 'pkcs11js.js');
const entry = existsSync(built) ? built : join(__dirname, '..', 'src', 'pkcs11js.ts');
module.exports = require(entry).default;
