/**
 * The package as a user gets it: `npm pack` builds first and ships what runs (LICENSE,
 * the bin launcher, the compiled code, source maps whose sources are shipped); installed
 * into an empty project it imports, `pkcs11-ha --version` runs, and `require` gets a clear
 * answer. The install is offline when npm's cache has every dependency, else it uses the
 * registry; each step is bounded in time.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const work = mkdtempSync(join(tmpdir(), 'pkcs11-ha-pack-'));
const distBefore = existsSync(join(ROOT, 'dist'));

/** npm and node without the npm_* variables of an enclosing `npm test`. */
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));

function exec(file: string, args: string[], cwd: string, limitMs: number): Promise<{ code: number; out: string; err: string }> {
  return new Promise((done) => {
    execFile(file, args, { cwd, env, timeout: limitMs, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (error, out, err) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, out, err });
    });
  });
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  // The pack built dist/ in the work tree: leave the tree as it was.
  if (!distBefore) rmSync(join(ROOT, 'dist'), { recursive: true, force: true });
});

describe('the package', () => {
  it('packs (building first), installs into an empty project, imports, runs pkcs11-ha --version, and answers require clearly', async () => {
    const pack = await exec('npm', ['pack', '--json', '--pack-destination', work], ROOT, 120_000);
    expect(pack.code, pack.err).toBe(0);
    const [{ filename }] = JSON.parse(pack.out.slice(pack.out.indexOf('['))) as [{ filename: string }];
    const tarball = join(work, filename);

    // What ships: unpacked, every source map's sources are in the package.
    const unpacked = join(work, 'unpacked');
    await exec('mkdir', ['-p', unpacked], work, 10_000);
    expect((await exec('tar', ['-xzf', tarball, '-C', unpacked], work, 30_000)).code).toBe(0);
    const pkg = join(unpacked, 'package');
    for (const path of ['LICENSE', 'bin/pkcs11-ha.js', 'cjs/require.cjs', 'cjs/register.cjs', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/admin/admin-server.js']) {
      expect(existsSync(join(pkg, path)), path).toBe(true);
    }
    expect(readFileSync(join(pkg, 'LICENSE'), 'utf8')).toMatch(/^MIT License/);
    expect(existsSync(join(pkg, 'test'))).toBe(false);
    const maps = files(pkg).filter((f) => f.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(0);
    const dangling = maps.flatMap((map) => {
      const { sources } = JSON.parse(readFileSync(map, 'utf8')) as { sources: string[] };
      return sources.map((s) => resolve(dirname(map), s)).filter((s) => !existsSync(s));
    });
    expect(dangling).toEqual([]);

    // An empty project installs it: offline from npm's cache when it can.
    const project = join(work, 'project');
    await exec('mkdir', ['-p', project], work, 10_000);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
    let install = await exec('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], project, 180_000);
    if (install.code !== 0) install = await exec('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], project, 180_000);
    expect(install.code, install.err).toBe(0);

    const imported = await exec(process.execPath, ['--input-type=module', '-e', "import { HaGroup } from 'pkcs11-ha'; import { createTestbed } from 'pkcs11-ha/testbed'; console.log(typeof HaGroup.open, typeof createTestbed)"], project, 30_000);
    expect(imported).toMatchObject({ code: 0, out: 'function function\n' });

    const bin = join(project, 'node_modules', '.bin', 'pkcs11-ha');
    expect(await exec(bin, ['--version'], project, 30_000)).toMatchObject({ code: 0, out: `${version}\n` });
    const usage = await exec(bin, ['status'], project, 30_000);
    expect(usage.code).toBe(2);
    expect(usage.err).toMatch(/^pkcs11-ha status: give either --config/);

    const required = await exec(process.execPath, ['-e', "require('pkcs11-ha')"], project, 30_000);
    expect(required.code).not.toBe(0);
    expect(required.err).toContain('pkcs11-ha is an ES module package and cannot be loaded with require()');
    expect(required.err).toContain("await import('pkcs11-ha')");
    const hook = await exec(process.execPath, ['--require', 'pkcs11-ha/register', '-e', '0'], project, 30_000);
    expect(hook.code).not.toBe(0);
    expect(hook.err).toContain('pkcs11-ha is an ES module package and cannot be loaded with require()');
    expect(hook.err).toContain('node --import pkcs11-ha/register');
  }, 420_000);
});
