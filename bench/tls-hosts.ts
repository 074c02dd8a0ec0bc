/**
 * Remote member hosts for the benchmark: one process per SoftHSM token, serving it over
 * mutual TLS on 127.0.0.1 (a free port), with certificates the test bed makes
 * (src/testbed/tls-certificates.ts).
 *
 * - {@link startCliHost}: the product's own `pkcs11-ha host --listen 127.0.0.1:0 --config
 *   <host.json>` (src/cli/main.ts through tsx).
 * - {@link startEmulatedHost}: bench/tls-host-child, the same `TlsMemberHost` with an
 *   EMULATED capacity (the CLI has no emulation option: it is a measurement device).
 *
 * Both keep the host's log lines (its stderr) for error messages, and both hosts are
 * SIGKILLed if the benchmark process exits without closing them.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { EmulatedCapacity } from '../src/host/host-ipc.js';
import type { TestbedToken } from '../src/testbed/softhsm-testbed.js';
import type { TestCertificates } from '../src/testbed/tls-certificates.js';
import { BENCH_DIR, benchScript } from './paths.js';

/**
 * The CLI's entry: src/cli/main.ts of the source tree, run through tsx whether the
 * benchmark runs compiled or not (compiled into .bench-build/, the CLI would look for the
 * package.json beside it and find none). tsx costs start-up time only.
 */
const CLI = `${BENCH_DIR}../src/cli/main.ts`;
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const CHILD = benchScript('tls-host-child');
/** How long a host may take to start (a third of a CPU-second compiled, more through tsx, several at once on 2 shared cores). */
const START_TIMEOUT_MS = 120_000;

/** One running TLS member host. */
export interface BenchTlsHost {
  /** The token's label (also the member's name). */
  readonly name: string;
  /** `tls://127.0.0.1:<port>`. */
  readonly url: string;
  /** The host's log lines so far (its stderr; the last 200). */
  readonly log: readonly string[];
  /** SIGTERM, then SIGKILL after 5 s; resolves when it has exited. Idempotent. */
  close(): Promise<void>;
}

/** What the emulated host child gets over IPC (bench/tls-host-child.ts). */
export interface TlsHostChildInit {
  readonly type: 'init';
  readonly name: string;
  readonly modulePath: string;
  readonly moduleEnv: Readonly<Record<string, string>>;
  readonly label: string;
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string };
  readonly emulate: EmulatedCapacity;
}

/** Its answer: the port it listens on, or why it could not start. */
export type TlsHostChildReply = { readonly type: 'listening'; readonly port: number } | { readonly type: 'error'; readonly message: string };

/** Logs the last 3 log lines of every host (after a failure), after `family`. */
export function logHostTails(hosts: readonly BenchTlsHost[], log: (line: string) => void, family: string): void {
  const lines = hosts.flatMap((h) => h.log.slice(-3).map((l) => `${h.name}: ${l}`));
  if (lines.length > 0) log(`${family}: last host log lines:\n  ${lines.join('\n  ')}`);
}

const live = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHook) {
    exitHook = true;
    // A crash of the benchmark must not leave listening hosts behind.
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

function keepLines(stream: NodeJS.ReadableStream | null, log: string[]): void {
  let rest = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    rest += chunk;
    const lines = rest.split('\n');
    rest = lines.pop()!;
    log.push(...lines);
    if (log.length > 200) log.splice(0, log.length - 200);
  });
}

function closer(child: ChildProcess): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () =>
    (closing ??= new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    }));
}

/** Waits for `listening on <addr>:<port>` on the child's stdout; rejects if it exits first or takes too long. */
function listeningPort(child: ChildProcess, name: string, log: readonly string[]): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let out = '';
    const done = (error?: Error, port?: number): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      if (error !== undefined) reject(error);
      else resolve(port!);
    };
    const onData = (chunk: string): void => {
      out += chunk;
      const m = /listening on [^\s]+:(\d+)/.exec(out);
      if (m !== null) done(undefined, Number(m[1]));
    };
    const onExit = (): void => done(new Error(`member host ${name} exited before it listened: ${log.slice(-5).join(' | ')}`));
    const timer = setTimeout(() => done(new Error(`member host ${name} did not listen within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    child.stdout!.setEncoding('utf8').on('data', onData);
    child.once('exit', onExit);
  });
}

/**
 * `pkcs11-ha host --listen 127.0.0.1:0 --config <dir>/host-<label>.json` for `token`
 * (default settings: 2 threads, short calls inline), once it listens.
 */
export async function startCliHost(dir: string, token: TestbedToken, certs: TestCertificates): Promise<BenchTlsHost> {
  const config = join(dir, `host-${token.label}.json`);
  await writeFile(
    config,
    JSON.stringify({ name: token.label, module: { path: token.modulePath, env: token.env }, token: { label: token.label }, tls: { ca: certs.ca, cert: certs.host.cert, key: certs.host.key } }),
  );
  // Its own process group: a Ctrl-C of the benchmark must not stop it before the groups over it close.
  const child = spawn(process.execPath, ['--import', TSX, CLI, 'host', '--listen', '127.0.0.1:0', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  track(child);
  const log: string[] = [];
  keepLines(child.stderr, log);
  const close = closer(child);
  try {
    const port = await listeningPort(child, token.label, log);
    return { name: token.label, url: `tls://127.0.0.1:${port}`, log, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** A TLS member host for `token` whose device has the EMULATED `capacity`, once it listens. */
export async function startEmulatedHost(token: TestbedToken, certs: TestCertificates, capacity: EmulatedCapacity): Promise<BenchTlsHost> {
  const child = fork(CHILD, [], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  track(child);
  const log: string[] = [];
  keepLines(child.stderr, log);
  child.stdout?.resume();
  const close = closer(child);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`emulated member host ${token.label} did not listen within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      child.once('message', (m: TlsHostChildReply) => {
        clearTimeout(timer);
        if (m.type === 'listening') resolve(m.port);
        else reject(new Error(`emulated member host ${token.label}: ${m.message}`));
      });
      child.once('exit', () => {
        clearTimeout(timer);
        reject(new Error(`emulated member host ${token.label} exited before it listened: ${log.slice(-5).join(' | ')}`));
      });
      child.send({
        type: 'init',
        name: token.label,
        modulePath: token.modulePath,
        moduleEnv: token.env,
        label: token.label,
        tls: { ca: certs.ca, cert: certs.host.cert, key: certs.host.key },
        emulate: capacity,
      } satisfies TlsHostChildInit);
    });
    return { name: token.label, url: `tls://127.0.0.1:${port}`, log, close };
  } catch (error) {
    await close();
    throw error;
  }
}
