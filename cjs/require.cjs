'use strict';
// What `require('pkcs11-ha')` gets: the package is ESM only.
throw new Error(
  "pkcs11-ha is an ES module package and cannot be loaded with require(). " +
    "Use `import { HaGroup } from 'pkcs11-ha'` (an .mjs file, or \"type\": \"module\" in package.json), " +
    "or from CommonJS `const { HaGroup } = await import('pkcs11-ha')`.",
);
