/**
 * The register hook: an unmodified script that does `require('pkcs11js')` and loads a
 * hard-coded module path runs on the group when started with the hook in NODE_OPTIONS
 * and PKCS11_HA_CONFIG set; the member hosts it starts run without the hook and start no
 * hosts of their own.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRegisterHook, stripHookArgs, stripRegisterHook } from '../../src/facade/hook-flags.js';
import { isOwnModule } from '../../src/facade/redirect.js';
import { facadeFixture, secretValue } from './facade-fixture.js';

const fixture = facadeFixture('r');
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pkcs11-ha-register-'));
/** The package as installed: package.json, cjs/ and the compiled dist/ (no tsx in the app or its hosts). */
const PKG = join(dir, 'node_modules', 'pkcs11-ha');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(() => {
  mkdirSync(PKG, { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(PKG, 'package.json'));
  cpSync(join(ROOT, 'cjs'), join(PKG, 'cjs'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(PKG, 'node_modules'));
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  // Type errors elsewhere in the tree do not stop the emit this test needs.
  try {
    execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(PKG, 'dist'), '--declaration', 'false', '--sourceMap', 'false'], { stdio: 'pipe' });
  } catch {
    // emitted anyway
  }
}, 120_000);

describe('pkcs11-ha/register', () => {
  it('redirects require("pkcs11js") of an unmodified script to the group; hosts run without the hook', async () => {
    const configPath = join(dir, 'group.json');
    writeFileSync(configPath, JSON.stringify(fixture.config()));
    const { stdout } = await promisify(execFile)(process.execPath, [join(ROOT, 'test/facade/fixtures/require-app.cjs')], {
      cwd: dir,
      env: {
        ...process.env,
        NODE_OPTIONS: `--import ${pathToFileURL(join(PKG, 'dist/register.js')).href}`,
        PKCS11_HA_CONFIG: configPath,
        APP_PIN: fixture.userPin,
        APP_KEY: 'r-hmac',
      },
      timeout: 120_000,
    });
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      manufacturer: string;
      slots: number;
      mac: string;
      badHandle: { pkcs11Error: boolean; message: string; code: number };
      hosts: { nodeOptions: string | null; grandchildren: number }[];
    };
    expect(result.manufacturer).toBe('pkcs11-ha');
    expect(result.slots).toBe(1);
    expect(result.mac).toBe(createHmac('sha256', secretValue(fixture.keys, 'hmac')).update('hello').digest('hex'));
    expect(result.badHandle).toEqual({ pkcs11Error: true, message: 'CKR_KEY_HANDLE_INVALID', code: 0x60 });
    expect(result.hosts).toHaveLength(3);
    for (const host of result.hosts) {
      expect(host.nodeOptions ?? '').not.toMatch(/register/);
      expect(host.grandchildren).toBe(0);
    }
  });
});

describe('the hook in flags', () => {
  it('is recognised as a package specifier or a path, and taken out of NODE_OPTIONS and execArgv', () => {
    expect(isRegisterHook('pkcs11-ha/register')).toBe(true);
    expect(isRegisterHook('/app/node_modules/pkcs11-ha/dist/register.js')).toBe(true);
    expect(isRegisterHook('/work/pkcs11-ha/src/register.ts')).toBe(true);
    expect(isRegisterHook('tsx')).toBe(false);
    expect(stripRegisterHook('--import tsx --import pkcs11-ha/register --max-old-space-size=100')).toBe('--import tsx --max-old-space-size=100');
    expect(stripRegisterHook('--import=pkcs11-ha/register')).toBe('');
    expect(stripHookArgs(['--import', 'pkcs11-ha/register', '--enable-source-maps'])).toEqual(['--enable-source-maps']);
  });

  it("never redirects the library's own modules", () => {
    const own = ['file:///pkg/src/', 'file:///pkg/dist/'];
    expect(isOwnModule('/pkg/src/native/pkcs11js.ts', own)).toBe(true);
    expect(isOwnModule('file:///pkg/dist/facade/facade-error.js', own)).toBe(true);
    expect(isOwnModule('/pkg/node_modules/graphene-pk11/build/cjs/module.js', own)).toBe(false);
    expect(isOwnModule('/app/index.js', own)).toBe(false);
  });
});
