#!/usr/bin/env node
// Makes sure the environment can run the tests, the demo and the benchmarks:
//   1. node_modules with a built pkcs11js (runs `npm ci`, or `npm install` without a lock file);
//   2. SoftHSM2 (softhsm2-util on PATH and the libsofthsm2 module), installed with apt-get
//      when running as root or with password-less sudo; otherwise says what to run and exits 1.
// Plain Node ESM, no dependencies. Prints nothing and spawns nothing when all is present.

import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const NATIVE_ADDON = join(root, 'node_modules', 'pkcs11js', 'build', 'Release', 'pkcs11.node');
const MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  '/usr/lib64/pkcs11/libsofthsm2.so',
  '/opt/homebrew/lib/softhsm/libsofthsm2.so',
];
const APT_HINT = 'sudo apt-get update && sudo apt-get install -y softhsm2';
const BREW_HINT = 'brew install softhsm';

const done = [];

function isFile(path) {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function onPath(command) {
  const exts = process.platform === 'win32' ? (process.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';') : [''];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    for (const ext of exts) if (isFile(join(dir, command + ext))) return true;
  }
  return false;
}

function softHsmModule() {
  const fromEnv = process.env.SOFTHSM2_MODULE;
  return [...(fromEnv ? [fromEnv] : []), ...MODULE_CANDIDATES].find(isFile);
}

/** What is missing of SoftHSM2, e.g. `['softhsm2-util']`; empty when it is installed. */
function softHsmMissing() {
  const missing = [];
  if (!onPath('softhsm2-util')) missing.push('softhsm2-util');
  if (softHsmModule() === undefined) missing.push('libsofthsm2.so');
  return missing;
}

/** Runs a command with inherited stdio; returns true when it exits with 0. */
function run(command, args, env) {
  const result = spawnSync(command, args, {
    cwd: root,
    stdio: 'inherit',
    env: env ? { ...process.env, ...env } : process.env,
    shell: process.platform === 'win32',
  });
  if (result.error) console.error(`ensure-env: could not run ${command}: ${result.error.message}`);
  return result.status === 0;
}

function fail(message) {
  console.error(`ensure-env: ${message}`);
  process.exit(1);
}

// 1. Node dependencies, with the pkcs11js native addon built.
if (!isFile(NATIVE_ADDON)) {
  const hasLock = isFile(join(root, 'package-lock.json'));
  const npmArgs = hasLock ? ['ci'] : ['install'];
  if (!run('npm', npmArgs)) fail(`\`npm ${npmArgs.join(' ')}\` failed; fix the error above and run it again.`);
  if (!isFile(NATIVE_ADDON)) {
    // e.g. scripts were skipped (ignore-scripts): build the addon explicitly.
    run('npm', ['rebuild', 'pkcs11js']);
  }
  if (!isFile(NATIVE_ADDON)) {
    fail(`pkcs11js native addon missing (${NATIVE_ADDON}); it needs a C++ toolchain and Python (node-gyp): ` +
      'on Debian/Ubuntu `sudo apt-get install -y build-essential python3`, then `npm rebuild pkcs11js`.');
  }
  done.push(`installed node modules (npm ${npmArgs.join(' ')})`);
}

/** How this user can run apt-get: [] as root, ['sudo', '-n'] with password-less sudo, else undefined. */
function aptPrefix() {
  const hasApt = process.platform === 'linux' && onPath('apt-get');
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (hasApt && isRoot) return [];
  if (hasApt && onPath('sudo') && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0) return ['sudo', '-n'];
  return undefined;
}

// 2. SoftHSM2.
const missing = softHsmMissing();
if (missing.length > 0) {
  const hint = process.platform === 'darwin' ? BREW_HINT : APT_HINT;
  const prefix = aptPrefix();
  if (prefix === undefined) {
    fail(`SoftHSM2 is missing (${missing.join(' and ')} not found). Install it with:\n  ${hint}\n` +
      'or set SOFTHSM2_MODULE to the path of libsofthsm2.so if it is installed elsewhere.');
  }
  const apt = (...args) => {
    const [cmd, ...rest] = [...prefix, 'apt-get', ...args];
    return run(cmd, rest, { DEBIAN_FRONTEND: 'noninteractive' });
  };
  if (!apt('update')) fail(`\`apt-get update\` failed. Install SoftHSM2 yourself with:\n  ${hint}`);
  if (!apt('install', '-y', 'softhsm2')) fail(`\`apt-get install -y softhsm2\` failed. Install SoftHSM2 yourself with:\n  ${hint}`);
  const stillMissing = softHsmMissing();
  if (stillMissing.length > 0) {
    fail(`softhsm2 was installed but ${stillMissing.join(' and ')} is still not found: ` +
      'put softhsm2-util on PATH and/or set SOFTHSM2_MODULE to the path of libsofthsm2.so.');
  }
  done.push(`installed SoftHSM2 (${prefix.length ? 'sudo ' : ''}apt-get install -y softhsm2)`);
}

// 3. PostgreSQL server binaries (optional): the shared journal's tests start throwaway
//    clusters with them and skip, saying so, when they are absent. Not installed here.
const hasPostgres = (() => {
  try {
    if (statSync('/usr/lib/postgresql').isDirectory()) return true;
  } catch {
    // not Debian's layout
  }
  return onPath('initdb') && onPath('postgres');
})();
const POSTGRES_HINT = process.platform === 'darwin' ? 'brew install postgresql' : 'sudo apt-get install -y postgresql';
// Only `npm test` needs the server; the demo and the benchmarks do not.
if (!hasPostgres && process.env.npm_lifecycle_event === 'pretest') {
  const prefix = aptPrefix();
  const [cmd, ...args] = [...(prefix ?? []), 'apt-get', 'install', '-y', 'postgresql'];
  const installed = prefix !== undefined && run(cmd, args, { DEBIAN_FRONTEND: 'noninteractive' });
  if (installed) done.push(`installed PostgreSQL (${prefix.length ? 'sudo ' : ''}apt-get install -y postgresql)`);
  else {
    console.warn('ensure-env: PostgreSQL server binaries not found: the PostgreSQL journal tests will skip. ' +
      `To run them: \`${POSTGRES_HINT}\`.`);
  }
}

if (done.length > 0) console.log(`ensure-env: ${done.join('; ')}`);
