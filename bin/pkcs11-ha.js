#!/usr/bin/env node
// The `pkcs11-ha` command. Installed from the package: the compiled CLI in dist/. In a
// clone of the repository (it has tsconfig.json, which the package does not ship): the
// TypeScript source through tsx, a devDependency, so that `npx pkcs11-ha` works right
// after `npm install` and never runs a stale build.
import { existsSync } from 'node:fs';

const clone = existsSync(new URL('../tsconfig.json', import.meta.url)) && existsSync(new URL('../src/cli/main.ts', import.meta.url));
let entry = new URL('../dist/cli/main.js', import.meta.url);
if (clone) {
  try {
    const { register } = await import('tsx/esm/api');
    register();
    entry = new URL('../src/cli/main.ts', import.meta.url);
  } catch {
    // No tsx (installed without devDependencies): the build, if there is one.
  }
}
if (!existsSync(entry)) {
  process.stderr.write('pkcs11-ha: not built: run `npm install` (or `npm run build`) first\n');
  process.exit(2);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
