// Writes schema/pkcs11-ha.config.schema.json from the zod definition of the group
// configuration (src/group/config-schema.ts). test/group/config-schema.test.ts fails when the
// committed file differs from what this writes, so the schema and the validation cannot drift.
//
// Usage: npm run schema
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configJsonSchemaText } from '../src/group/config-schema.js';

const target = join(dirname(dirname(fileURLToPath(import.meta.url))), 'schema', 'pkcs11-ha.config.schema.json');
writeFileSync(target, configJsonSchemaText());
console.log(`wrote ${target}`);
