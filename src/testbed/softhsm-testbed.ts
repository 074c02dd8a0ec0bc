/**
 * A throw-away SoftHSM2 testbed: N real PKCS#11 tokens in a fresh temporary directory,
 * for tests, demos and benchmarks of pkcs11-ha.
 *
 * Two layouts:
 * - `'independent'` (default): every token is its own "device": its own directory, its own
 *   `softhsm2.conf`, its own token directory and its own BYTE COPY of the SoftHSM module.
 *   pkcs11js `dlopen`s with `RTLD_LOCAL`, so a byte copy (another inode) is a separate
 *   library instance in the same process, while the same path loaded twice would be one
 *   instance. Each member therefore initialises and finalises independently.
 * - `'shared'`: one configuration and one token directory holding all N tokens; every
 *   member uses the original module path, so the tokens are N slots of ONE module.
 *
 * PINs are never printed: errors name the step and carry softhsm2-util's stderr with any
 * occurrence of a PIN scrubbed, never the command line.
 */

import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { statSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { HaError, InvalidArgumentError } from '../errors/ha-error.js';

const execFileAsync = promisify(execFile);

const SOFTHSM_UTIL = 'softhsm2-util';
const UTIL_TIMEOUT_MS = 60_000;
const INSTALL_HINT =
  'Install SoftHSM2: run `sudo apt-get update && sudo apt-get install -y softhsm2` (Debian/Ubuntu) ' +
  'or `brew install softhsm` (macOS)';

/** Where {@link findSoftHsmModule} looks for the SoftHSM2 module, after `SOFTHSM2_MODULE`. */
const MODULE_CANDIDATES: readonly string[] = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  '/usr/lib64/pkcs11/libsofthsm2.so',
  '/opt/homebrew/lib/softhsm/libsofthsm2.so',
];

/** How the tokens of a testbed are laid out. See the module documentation. */
export type TestbedLayout = 'independent' | 'shared';

/** The role a member plays in a group configuration. */
export type TestbedRole = 'active' | 'standby';

/** Options of {@link createTestbed}. Every field is optional. */
export interface TestbedOptions {
  /** Number of tokens to create (a positive integer). Default 3. */
  count?: number;
  /** Token labels are `<labelPrefix>-1` ... `<labelPrefix>-<count>`. Default `'member'`. */
  labelPrefix?: string;
  /** Security Officer PIN of every token (4-255 characters). Default: 8 random digits. */
  soPin?: string;
  /** User PIN of every token (4-255 characters). Default: 8 random digits. */
  userPin?: string;
  /** `'independent'` (default): one module copy per token; `'shared'`: N slots of one module. */
  layout?: TestbedLayout;
  /** Path of the SoftHSM2 module. Default: {@link findSoftHsmModule}. */
  modulePath?: string;
}

/** One token of a {@link Testbed}. */
export interface TestbedToken {
  /** Position in {@link Testbed.tokens}, 0-based. */
  readonly index: number;
  /** Token label, `<labelPrefix>-<index + 1>`. */
  readonly label: string;
  /** Token serial number as SoftHSM reports it (16 hex digits). */
  readonly serial: string;
  /** Module to load for this token (a private copy in the `'independent'` layout). */
  readonly modulePath: string;
  /** The `softhsm2.conf` this token is reachable through. */
  readonly confPath: string;
  /** The SoftHSM token directory (`directories.tokendir`) holding this token. */
  readonly tokenDir: string;
  /** Environment to set before `C_Initialize` of {@link TestbedToken.modulePath}. */
  readonly env: { readonly SOFTHSM2_CONF: string };
  /** User PIN. */
  readonly userPin: string;
  /** Security Officer PIN. */
  readonly soPin: string;
}

/** One member in the group configuration format, as returned by {@link Testbed.memberConfigs}. */
export interface TestbedMemberConfig {
  /** Member name: the token label. */
  name: string;
  /** Module path and the environment it needs at `C_Initialize`. */
  module: { path: string; env: { SOFTHSM2_CONF: string } };
  /** How to find the token in the module. */
  token: { label: string };
  /** User PIN. */
  userPin: string;
  /** Security Officer PIN. */
  soPin: string;
  /** Member role. */
  role: TestbedRole;
}

/** A set of freshly initialised SoftHSM2 tokens in a temporary directory. */
export interface Testbed extends AsyncDisposable {
  /** The temporary directory holding everything; removed by {@link Testbed.dispose}. */
  readonly dir: string;
  /** The layout the tokens were created with. */
  readonly layout: TestbedLayout;
  /** The tokens, in label order. */
  readonly tokens: readonly TestbedToken[];
  /**
   * The tokens as member configurations for a group (fresh plain objects on every call).
   * @param options.roles role of each member by position; missing entries are `'active'`
   */
  memberConfigs(options?: { roles?: readonly TestbedRole[] }): TestbedMemberConfig[];
  /** Removes the temporary directory. Idempotent; safe to call concurrently. */
  dispose(): Promise<void>;
  /** Same as {@link Testbed.dispose}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Finds the SoftHSM2 PKCS#11 module on this machine: the file named by the
 * `SOFTHSM2_MODULE` environment variable if it exists, else the first existing file of
 * the usual install locations (Debian/Ubuntu, /usr/local, Fedora, Homebrew).
 * @returns the module path, or `undefined` when SoftHSM2 is not installed
 */
export function findSoftHsmModule(): string | undefined {
  const fromEnv = process.env['SOFTHSM2_MODULE'];
  const candidates = fromEnv ? [fromEnv, ...MODULE_CANDIDATES] : MODULE_CANDIDATES;
  for (const candidate of candidates) {
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not there: try the next one
    }
  }
  return undefined;
}

/**
 * The version of the installed SoftHSM2, as printed by `softhsm2-util --version`.
 * @returns e.g. `'2.6.1'`, or `undefined` when softhsm2-util is missing or fails
 */
export async function softHsmVersion(): Promise<string | undefined> {
  try {
    const run = execFileAsync(SOFTHSM_UTIL, ['--version'], { encoding: 'utf8', timeout: UTIL_TIMEOUT_MS });
    run.child.stdin?.end();
    const { stdout } = await run;
    const version = stdout.trim();
    return version === '' ? undefined : version;
  } catch {
    return undefined;
  }
}

/**
 * Creates `count` freshly initialised SoftHSM2 tokens in a new temporary directory
 * (`<os.tmpdir()>/pkcs11-ha-XXXXXX`). Tokens of the `'independent'` layout are created in
 * parallel. On failure everything created so far is removed.
 *
 * @throws HaError `ERR_TESTBED` when SoftHSM2 is missing (the message says how to install
 *   it) or a step fails (the message names the step; PINs never appear in it)
 * @throws HaError `ERR_INVALID_ARGUMENT` for invalid options
 *
 * @example
 * ```ts
 * import { createTestbed } from 'pkcs11-ha/testbed';
 *
 * await using testbed = await createTestbed({ count: 3, layout: 'independent' });
 * const members = testbed.memberConfigs({ roles: ['active', 'active', 'standby'] });
 * // members[0] = { name: 'member-1', module: { path, env: { SOFTHSM2_CONF } },
 * //                token: { label: 'member-1' }, userPin, soPin, role: 'active' }
 * for (const token of testbed.tokens) console.log(token.label, token.serial);
 * // the directory is removed when `testbed` goes out of scope (or call testbed.dispose())
 * ```
 */
export async function createTestbed(options: TestbedOptions = {}): Promise<Testbed> {
  const count = options.count ?? 3;
  if (!Number.isInteger(count) || count < 1) {
    throw new InvalidArgumentError(`testbed count must be a positive integer, got ${String(count)}`);
  }
  const labelPrefix = options.labelPrefix ?? 'member';
  if (typeof labelPrefix !== 'string' || labelPrefix === '') {
    throw new InvalidArgumentError('testbed labelPrefix must be a non-empty string');
  }
  const layout = options.layout ?? 'independent';
  if (layout !== 'independent' && layout !== 'shared') {
    throw new InvalidArgumentError(`testbed layout must be 'independent' or 'shared', got ${String(layout)}`);
  }
  const soPin = options.soPin ?? randomDigits(8);
  const userPin = options.userPin ?? randomDigits(8);
  checkPin('soPin', soPin);
  checkPin('userPin', userPin);
  const secrets = [soPin, userPin];

  const modulePath = options.modulePath ?? findSoftHsmModule();
  if (modulePath === undefined) {
    throw new HaError('ERR_TESTBED', `SoftHSM2 module (libsofthsm2.so) not found. ${INSTALL_HINT}, or set SOFTHSM2_MODULE to the module's path.`);
  }
  try {
    if (!(await stat(modulePath)).isFile()) throw new Error('not a file');
  } catch {
    throw new HaError('ERR_TESTBED', `SoftHSM2 module ${modulePath} is not a readable file. ${INSTALL_HINT}.`);
  }

  const dir = await mkdtemp(join(tmpdir(), 'pkcs11-ha-'));
  const labels = Array.from({ length: count }, (_, i) => `${labelPrefix}-${i + 1}`);
  let tokens: TestbedToken[];
  try {
    if (layout === 'independent') {
      const results = await Promise.allSettled(
        labels.map((label, index) => createIndependentToken(dir, index, label, modulePath, soPin, userPin, secrets)),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      tokens = results.map((r) => (r as PromiseFulfilledResult<TestbedToken>).value);
    } else {
      tokens = await createSharedTokens(dir, labels, modulePath, soPin, userPin, secrets);
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }

  const frozenTokens = Object.freeze(tokens.map((t) => Object.freeze({ ...t, env: Object.freeze({ ...t.env }) })));
  let disposing: Promise<void> | undefined;
  const dispose = (): Promise<void> => {
    disposing ??= rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch((error: unknown) => {
      disposing = undefined; // let a later call retry
      throw new HaError('ERR_TESTBED', `removing testbed directory ${dir} failed: ${errorText(error)}`);
    });
    return disposing;
  };

  return {
    dir,
    layout,
    tokens: frozenTokens,
    memberConfigs(configOptions?: { roles?: readonly TestbedRole[] }): TestbedMemberConfig[] {
      const roles = configOptions?.roles ?? [];
      if (roles.length > frozenTokens.length) {
        throw new InvalidArgumentError(`memberConfigs: ${roles.length} roles given for ${frozenTokens.length} tokens`);
      }
      for (const role of roles) {
        if (role !== 'active' && role !== 'standby') {
          throw new InvalidArgumentError(`memberConfigs: role must be 'active' or 'standby', got ${String(role)}`);
        }
      }
      return frozenTokens.map((token, i) => ({
        name: token.label,
        module: { path: token.modulePath, env: { SOFTHSM2_CONF: token.env.SOFTHSM2_CONF } },
        token: { label: token.label },
        userPin: token.userPin,
        soPin: token.soPin,
        role: roles[i] ?? 'active',
      }));
    },
    dispose,
    [Symbol.asyncDispose]: dispose,
  };
}

// ---------------------------------------------------------------------------------------

async function createIndependentToken(
  dir: string,
  index: number,
  label: string,
  originalModule: string,
  soPin: string,
  userPin: string,
  secrets: readonly string[],
): Promise<TestbedToken> {
  const tokenHome = join(dir, `token-${index + 1}`);
  const tokenDir = join(tokenHome, 'tokens');
  const confPath = join(tokenHome, 'softhsm2.conf');
  const modulePath = join(tokenHome, 'libsofthsm2.so');
  await step(`creating ${tokenDir}`, () => mkdir(tokenDir, { recursive: true }));
  await step(`writing ${confPath}`, () => writeFile(confPath, confText(tokenDir), { mode: 0o600 }));
  await step(`copying module ${originalModule} to ${modulePath}`, () => copyFile(originalModule, modulePath));
  await initToken(confPath, label, soPin, userPin, secrets);
  const serials = await readSerials(confPath, secrets);
  const serial = serialOf(serials, label);
  return { index, label, serial, modulePath, confPath, tokenDir, env: { SOFTHSM2_CONF: confPath }, userPin, soPin };
}

async function createSharedTokens(
  dir: string,
  labels: readonly string[],
  modulePath: string,
  soPin: string,
  userPin: string,
  secrets: readonly string[],
): Promise<TestbedToken[]> {
  const tokenDir = join(dir, 'tokens');
  const confPath = join(dir, 'softhsm2.conf');
  await step(`creating ${tokenDir}`, () => mkdir(tokenDir, { recursive: true }));
  await step(`writing ${confPath}`, () => writeFile(confPath, confText(tokenDir), { mode: 0o600 }));
  // Sequential: two concurrent `--init-token --free` on one token directory could both
  // pick the same free slot.
  for (const label of labels) await initToken(confPath, label, soPin, userPin, secrets);
  const serials = await readSerials(confPath, secrets);
  return labels.map((label, index) => ({
    index,
    label,
    serial: serialOf(serials, label),
    modulePath,
    confPath,
    tokenDir,
    env: { SOFTHSM2_CONF: confPath },
    userPin,
    soPin,
  }));
}

function confText(tokenDir: string): string {
  return [
    `directories.tokendir = ${tokenDir}`,
    'objectstore.backend = file',
    'log.level = ERROR',
    'slots.removable = false',
    '',
  ].join('\n');
}

async function initToken(confPath: string, label: string, soPin: string, userPin: string, secrets: readonly string[]): Promise<void> {
  await runUtil(
    `initialising token '${label}'`,
    ['--init-token', '--free', '--label', label, '--so-pin', soPin, '--pin', userPin],
    confPath,
    secrets,
  );
}

/** Label -> serial of every initialised token visible through `confPath`. */
async function readSerials(confPath: string, secrets: readonly string[]): Promise<Map<string, string>> {
  const stdout = await runUtil('reading token serials (--show-slots)', ['--show-slots'], confPath, secrets);
  const serials = new Map<string, string>();
  // Blocks start with "Slot <id>" at the start of a line; each holds one token's info.
  for (const block of stdout.split(/^Slot /m).slice(1)) {
    const label = /^\s*Label:[ \t]*(.*)$/m.exec(block)?.[1]?.trim();
    const serial = /^\s*Serial number:[ \t]*(.*)$/m.exec(block)?.[1]?.trim();
    if (label && serial) serials.set(label, serial);
  }
  return serials;
}

function serialOf(serials: ReadonlyMap<string, string>, label: string): string {
  const serial = serials.get(label);
  if (serial === undefined) {
    throw new HaError('ERR_TESTBED', `reading token serials: softhsm2-util --show-slots lists no initialised token labelled '${label}'`);
  }
  return serial;
}

/**
 * Runs softhsm2-util with SOFTHSM2_CONF set and stdin closed (so that it never waits for a
 * PIN on a prompt). Failures never include the arguments, which may hold PINs.
 */
async function runUtil(what: string, args: readonly string[], confPath: string, secrets: readonly string[]): Promise<string> {
  try {
    const run = execFileAsync(SOFTHSM_UTIL, args, {
      env: { ...process.env, SOFTHSM2_CONF: confPath },
      encoding: 'utf8',
      timeout: UTIL_TIMEOUT_MS,
      maxBuffer: 4 * 1024 * 1024,
    });
    run.child.stdin?.end();
    const { stdout } = await run;
    return stdout;
  } catch (error) {
    // Deliberately no `cause`: Node's error message and `cmd` contain the full command line.
    const e = error as { code?: unknown; signal?: unknown; killed?: unknown; stderr?: unknown; stdout?: unknown };
    if (e.code === 'ENOENT') {
      throw new HaError('ERR_TESTBED', `${what}: ${SOFTHSM_UTIL} not found on PATH. ${INSTALL_HINT}.`);
    }
    let how: string;
    if (e.killed === true && typeof e.signal === 'string') how = `was killed (${e.signal}; time limit ${UTIL_TIMEOUT_MS} ms)`;
    else if (typeof e.signal === 'string' && e.signal !== '') how = `was killed by ${e.signal}`;
    else if (typeof e.code === 'number') how = `exited with code ${e.code}`;
    else if (typeof e.code === 'string') how = `could not run (${e.code})`;
    else how = 'failed';
    const stderr = typeof e.stderr === 'string' ? e.stderr.trim() : '';
    const stdout = typeof e.stdout === 'string' ? e.stdout.trim() : '';
    const output = stderr !== '' ? stderr : stdout;
    const detail = output === '' ? '' : `: ${truncate(output, 2000)}`;
    throw new HaError('ERR_TESTBED', scrub(`${what}: ${SOFTHSM_UTIL} ${how}${detail}`, secrets));
  }
}

async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw new HaError('ERR_TESTBED', `${what} failed: ${errorText(error)}`, { cause: error });
  }
}

function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret !== '') out = out.split(secret).join('***');
  return out;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}...`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function randomDigits(n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) out += String(randomInt(0, 10));
  return out;
}

function checkPin(name: string, pin: unknown): void {
  // SoftHSM accepts 4-255 characters; outside that range softhsm2-util would prompt instead.
  if (typeof pin !== 'string' || pin.length < 4 || pin.length > 255 || pin.includes('\0')) {
    throw new InvalidArgumentError(`testbed ${name} must be a string of 4 to 255 characters`);
  }
}
