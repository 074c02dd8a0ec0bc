/**
 * The package's entry points as package.json declares them, without packing (the pack
 * and install test is test/cli/package.test.ts): every entry an `import` reaches answers
 * a `require` too, and those that are ESM only throw one clear line that says what to do.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { name: string; exports: Record<string, string | Record<string, string>> };
// Inside the package, its own name resolves through "exports" (a self-reference), as for a user.
const require = createRequire(`${ROOT}package.json`);

const conditional = Object.entries(pkg.exports).filter((e): e is [string, Record<string, string>] => typeof e[1] === 'object');

describe('package.json exports', () => {
  it.each(conditional.map(([entry, targets]) => ({ entry, targets })))('$entry: a require condition beside its import one, to a shipped cjs file', ({ targets }) => {
    expect(targets.import).toBeDefined();
    expect(targets.require).toMatch(/^\.\/cjs\/[\w-]+\.cjs$/);
    expect(existsSync(`${ROOT}${targets.require}`)).toBe(true);
  });

  it("require('pkcs11-ha/register') says the hook is ESM and to load it with --import", () => {
    expect(require.resolve(`${pkg.name}/register`)).toBe(`${ROOT}cjs/register.cjs`);
    expect(() => require(`${pkg.name}/register`)).toThrow(/^pkcs11-ha is an ES module package and cannot be loaded with require\(\)\. Load its hook with `node --import pkcs11-ha\/register app\.js`/);
  });
});
