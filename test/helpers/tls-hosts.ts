/**
 * Remote member hosts for tests: `pkcs11-ha host --listen 127.0.0.1:0 --config <file>` as
 * real child processes, one per SoftHSM2 token of a test bed, with their log lines kept.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { TestbedToken } from '../../src/testbed/softhsm-testbed.js';
import type { TestCertificates } from './tls-certificates.js';
import { isGone } from './processes.js';
import { until } from './until.js';

const ENTRY = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** One running remote member host. */
export interface TlsHost {
  readonly pid: number;
  readonly port: number;
  /** `tls://127.0.0.1:<port>`. */
  readonly url: string;
  /** The host's log lines so far (its stderr). */
  readonly log: string[];
  readonly child: ChildProcess;
  /** SIGKILL, then waits until it is reaped. */
  kill(): Promise<void>;
  /** SIGTERM, then waits until it exits. */
  stop(): Promise<void>;
}

/**
 * Starts a member host for `token` on 127.0.0.1 (a free port, or `port` to come back on
 * the same one), and waits until it listens.
 */
export async function startTlsHost(dir: string, token: TestbedToken, certs: TestCertificates, options: { allow?: readonly string[]; port?: number; calls?: 'inline' | 'threads' } = {}): Promise<TlsHost> {
  const config = join(dir, `host-${token.label}.json`);
  await writeFile(
    config,
    JSON.stringify({
      name: token.label,
      module: { path: token.modulePath, env: token.env },
      token: { label: token.label },
      tls: { ca: certs.ca, cert: certs.host.cert, key: certs.host.key, ...(options.allow ? { allow: options.allow } : {}) },
      heartbeatIntervalMs: 200,
      ...(options.calls ? { calls: options.calls } : {}),
    }),
  );
  const child = spawn(process.execPath, ['--import', TSX, ENTRY, 'host', '--listen', `127.0.0.1:${options.port ?? 0}`, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    const lines = err.split('\n');
    err = lines.pop()!;
    log.push(...lines);
  });
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  let exited = false;
  child.once('exit', () => (exited = true));
  await until(() => /listening on [^\s]+:\d+/.test(out) || exited, `member host ${token.label} to listen`, 30_000);
  const m = /listening on [^\s]+:(\d+)/.exec(out);
  if (m === null) throw new Error(`member host ${token.label} did not start: ${log.join(' | ')}${err}`);
  const port = Number(m[1]);
  const pid = child.pid!;
  return {
    pid,
    port,
    url: `tls://127.0.0.1:${port}`,
    log,
    child,
    async kill() {
      if (!exited) child.kill('SIGKILL');
      await until(() => exited || isGone(pid), `member host ${token.label} to be gone`);
    },
    async stop() {
      if (!exited) child.kill('SIGTERM');
      await until(() => exited, `member host ${token.label} to stop`, 15_000);
    },
  };
}
