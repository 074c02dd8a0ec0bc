/**
 * What each `pkcs11-ha` subcommand does, given its parsed options; each returns its exit
 * code. The command line itself (names, options, help) is in `main.ts`.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import type { MemberConfig } from '../group/group-config.js';
import type { GroupStatus } from '../group/group-status.js';
import { HaGroup } from '../group/ha-group.js';
import { TlsMemberHost } from '../host/tls-member-host.js';
import { loadConfigFile } from './config-file.js';
import { loadHostConfigFile, parseListen } from './host-config-file.js';
import { ExitCode, UsageError, type ExitCodeValue } from './exit-codes.js';
import { openAccess, type GroupAccess, type LoginNeed, type TargetOptions } from './group-access.js';
import { health, statusJson, statusTable, summaryLine } from './status-view.js';

/** Where a command writes: the process's streams, or a test's. */
export interface Output {
  readonly out: NodeJS.WritableStream & { isTTY?: boolean };
  readonly err: NodeJS.WritableStream & { isTTY?: boolean };
}

const verdict = (status: GroupStatus): ExitCodeValue => (health(status).healthy ? ExitCode.ok : ExitCode.degraded);

/** Runs `act` on the group of `--config` or `--connect`, and always lets go of it. */
async function withGroup<T>(target: TargetOptions, login: LoginNeed, act: (group: GroupAccess) => Promise<T>): Promise<T> {
  const group = await openAccess(target, login);
  try {
    return await act(group);
  } finally {
    await group.close();
  }
}

/** `init`: the domain ceremony on the members of a config file. */
export async function initCommand(target: TargetOptions, io: Output): Promise<ExitCodeValue> {
  if (target.connect !== undefined || target.config === undefined) throw new UsageError('init needs --config <group.json>: it uses each member\'s soPin, which no admin endpoint takes');
  const result = await HaGroup.initDomain(loadConfigFile(target.config));
  io.out.write(`${JSON.stringify(result, null, 2)}\n`);
  return ExitCode.ok;
}

/** Options of `status`. */
export interface StatusOptions extends TargetOptions {
  readonly json?: boolean;
  /** Refresh interval (ms) of `--watch`; undefined: print once. */
  readonly watch?: number;
  /** With `--watch`: stop after this many refreshes. */
  readonly count?: number;
}

/** `status`: a table on a terminal, JSON otherwise; `--watch` refreshes it until Ctrl-C. */
export async function statusCommand(options: StatusOptions, io: Output): Promise<ExitCodeValue> {
  const table = io.out.isTTY === true && options.json !== true;
  return withGroup(options, 'never', async (group) => {
    if (options.watch === undefined) {
      const status = await group.status();
      io.out.write(table ? statusTable(status) : statusJson(status, true));
      return verdict(status);
    }
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      let code: ExitCodeValue = ExitCode.ok;
      for (let n = 0; !stop.signal.aborted && (options.count === undefined || n < options.count); n++) {
        if (n > 0) await delay(options.watch, stop.signal);
        if (stop.signal.aborted) break;
        const status = await group.status();
        io.out.write(table ? `\x1b[2J\x1b[H${new Date().toISOString()}\n${statusTable(status)}` : statusJson(status, false));
        code = verdict(status);
      }
      return code;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
}

/** `check`: one line, and the exit code a health check wants. */
export async function checkCommand(options: TargetOptions & { json?: boolean }, io: Output): Promise<ExitCodeValue> {
  return withGroup(options, 'never', async (group) => {
    const status = await group.status();
    io.out.write(options.json ? `${JSON.stringify({ ...health(status), primary: status.primary })}\n` : `${summaryLine(status)}\n`);
    return verdict(status);
  });
}

/** `sync`: settles what members owe, with a progress bar on a terminal; then the status. */
export async function syncCommand(options: TargetOptions, io: Output): Promise<ExitCodeValue> {
  return withGroup(options, 'required', async (group) => {
    const bars = io.err.isTTY ? new cliProgress.MultiBar({ stream: io.err, format: ' {member} [{bar}] {value}/{total}', hideCursor: true, clearOnComplete: false }, cliProgress.Presets.shades_classic) : undefined;
    const byMember = new Map<string, cliProgress.SingleBar>();
    try {
      await group.settle((e) => {
        if (bars === undefined) return;
        const bar = byMember.get(e.member) ?? bars.create(e.total, 0, { member: e.member });
        byMember.set(e.member, bar);
        bar.setTotal(e.total);
        bar.update(e.done, { member: e.member });
      });
    } finally {
      bars?.stop();
    }
    const status = await group.status();
    io.out.write(statusJson(status, true));
    return verdict(status);
  });
}

/** `recover <member>`: 0 when it serves afterwards, 1 when not. */
export async function recoverCommand(member: string, options: TargetOptions, io: Output): Promise<ExitCodeValue> {
  return withGroup(options, 'if-pin', async (group) => {
    if (await group.recover(member)) {
      io.out.write(`${member} serves\n`);
      return ExitCode.ok;
    }
    const state = (await group.status()).members.find((m) => m.name === member)?.state;
    io.err.write(`pkcs11-ha recover: ${member} does not serve${state?.kind === 'failed' ? `: ${state.reason}` : state ? ` (${state.kind})` : ''}\n`);
    return ExitCode.degraded;
  });
}

/** `standby <member> on|off`. */
export async function standbyCommand(member: string, on: 'on' | 'off', options: TargetOptions, io: Output): Promise<ExitCodeValue> {
  return withGroup(options, 'never', async (group) => {
    await group.setStandby(member, on === 'on');
    const m = (await group.status()).members.find((x) => x.name === member);
    io.out.write(`${member}: role ${m?.role ?? '?'}, state ${m?.state.kind ?? '?'}\n`);
    return ExitCode.ok;
  });
}

/** Options of `add-member`: the member's configuration, never a PIN. */
export interface AddMemberOptions extends TargetOptions {
  readonly member?: string;
  readonly name?: string;
  readonly module?: string;
  readonly moduleEnv?: readonly string[];
  readonly label?: string;
  readonly serial?: string;
  readonly role?: 'active' | 'standby';
}

/** The member configuration `add-member` was given. @throws {@link UsageError} */
export function memberFromOptions(o: AddMemberOptions): MemberConfig {
  if (o.member !== undefined) {
    if (o.module !== undefined || o.label !== undefined || o.serial !== undefined) throw new UsageError('give --member <json> or --module with --label/--serial, not both');
    let config: unknown;
    try {
      config = JSON.parse(o.member);
    } catch {
      throw new UsageError('--member must be a JSON member configuration');
    }
    if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new UsageError('--member must be a JSON object');
    // A PIN on a command line shows in `ps` and in shell history.
    if (Object.keys(config).some((k) => /pin/i.test(k))) throw new UsageError('--member takes no PIN: the application (or, with --config, the config file) gives the PINs');
    return config as MemberConfig;
  }
  if (o.module === undefined || (o.label === undefined) === (o.serial === undefined)) throw new UsageError('add-member needs --module <path> and one of --label or --serial (or --member <json>)');
  const env: Record<string, string> = {};
  for (const pair of o.moduleEnv ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--module-env takes NAME=VALUE, got ${JSON.stringify(pair)}`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return {
    ...(o.name !== undefined ? { name: o.name } : {}),
    module: Object.keys(env).length > 0 ? { path: o.module, env } : o.module,
    token: o.label !== undefined ? { label: o.label } : { serial: o.serial! },
    ...(o.role !== undefined ? { role: o.role } : {}),
  };
}

/** `add-member`: 0 when the member joined and serves, 1 when it could not join. */
export async function addMemberCommand(options: AddMemberOptions, io: Output): Promise<ExitCodeValue> {
  const member = memberFromOptions(options);
  return withGroup(options, 'if-pin', async (group) => {
    const name = await group.addMember(member);
    io.out.write(`${name} joined\n`);
    return ExitCode.ok;
  });
}

/** `remove-member <member>`. */
export async function removeMemberCommand(member: string, options: TargetOptions, io: Output): Promise<ExitCodeValue> {
  return withGroup(options, 'never', async (group) => {
    await group.removeMember(member);
    io.out.write(`${member} removed\n`);
    return ExitCode.ok;
  });
}

/**
 * `host --listen <addr:port> --config <host.json>`: a remote member host serving one token
 * over mutual TLS until SIGTERM or SIGINT (exit 0), or until its module is lost (exit 1).
 * Prints `listening on <addr>:<port>` once it serves.
 */
export async function hostCommand(options: { listen?: string; config?: string }, io: Output): Promise<ExitCodeValue> {
  if (options.listen === undefined || options.config === undefined) throw new UsageError('host needs --listen <address:port> and --config <host.json>');
  const listen = parseListen(options.listen);
  let lost: (code: ExitCodeValue) => void = () => undefined;
  const ended = new Promise<ExitCodeValue>((resolve) => (lost = resolve));
  const host = await TlsMemberHost.start({ ...loadHostConfigFile(options.config), listen, log: (line) => void io.err.write(`${line}\n`), onModuleLost: () => lost(ExitCode.degraded) });
  io.out.write(`listening on ${host.address.host}:${host.address.port}\n`);
  const stop = (): void => lost(ExitCode.ok);
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  try {
    return await ended;
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    await host.close();
  }
}

/** The package's root: two folders up from this file (src/cli or dist/cli). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The package's version. */
export function version(): string {
  return (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version;
}

/**
 * `demo` and `bench`: the repository's npm scripts, which need a clone (the examples and
 * benchmarks are not in the package). `dryRun` prints the command instead.
 */
export async function npmScriptCommand(script: 'demo' | 'bench', args: readonly string[], dryRun: boolean, io: Output): Promise<ExitCodeValue> {
  const source = script === 'demo' ? 'examples/demo.ts' : 'bench/run.ts';
  const command = ['npm', 'run', script, ...(args.length > 0 ? ['--', ...args] : [])];
  if (!existsSync(`${ROOT}${source}`)) {
    io.err.write(`pkcs11-ha ${script}: ${source} is not in the installed package; in a clone of the repository run: ${command.join(' ')}\n`);
    return ExitCode.usage;
  }
  if (dryRun) {
    io.out.write(`cd ${ROOT} && ${command.join(' ')}\n`);
    return ExitCode.ok;
  }
  const child = spawn(command[0]!, command.slice(1), { cwd: ROOT, stdio: 'inherit' });
  const code = await new Promise<number>((resolve) => {
    child.once('error', () => resolve(ExitCode.usage));
    child.once('exit', (c) => resolve(c ?? ExitCode.degraded));
  });
  return code === 0 ? ExitCode.ok : code === ExitCode.usage ? ExitCode.usage : ExitCode.degraded;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
