'use strict';
// What `require('pkcs11-ha/register')` (or `node --require pkcs11-ha/register`) gets: the
// hook is an ES module, loaded with --import.
throw new Error(
  "pkcs11-ha is an ES module package and cannot be loaded with require(). " +
    "Load its hook with `node --import pkcs11-ha/register app.js` (not --require).",
);
