/**
 * A throwaway PostgreSQL server for tests: a cluster made with initdb in a temporary
 * directory, started on a Unix socket in that directory (no TCP port), trust
 * authentication, stopped by its postmaster's pid and removed at the end. initdb refuses
 * to run as root, so as root the cluster belongs to the `postgres` user (runuser).
 *
 * The server binaries come from Debian's `postgresql` package (.ci/run installs it). When
 * they are absent, {@link postgresBinaries} is undefined and the tests that need a server
 * skip with {@link POSTGRES_MISSING}.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isGone } from './processes.js';
import { until } from './until.js';

const execFileAsync = promisify(execFile);

/** Why PostgreSQL tests skip when the server binaries are absent. */
export const POSTGRES_MISSING = 'PostgreSQL server binaries not found (initdb, postgres): run `sudo apt-get install -y postgresql`; .ci/run installs them';

/** The directory of initdb, postgres and pg_ctl: Debian's newest /usr/lib/postgresql/<v>/bin, or PATH's. */
export const postgresBinaries: string | undefined = findBinaries();

function findBinaries(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'postgres')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0] !== undefined) return join(root, versions[0], 'bin');
  }
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'))) return dir;
  }
  return undefined;
}

/** A running throwaway server. */
export interface PostgresServer {
  /** A connection string to its `postgres` database over the socket (user `postgres`, trust authentication). */
  readonly connectionString: string;
  /** The socket directory. */
  readonly socketDir: string;
  /** The postmaster's pid, while it runs. */
  readonly pid: number | undefined;
  /** Stops the server (SIGINT: fast shutdown; `immediate`: SIGQUIT) and waits until it is gone. The data stays. */
  stop(options?: { immediate?: boolean }): Promise<void>;
  /** Starts it again on the same data and socket. */
  start(): Promise<void>;
  /** Stops it if running and removes its directory. */
  dispose(): Promise<void>;
}

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Runs a server binary, as `postgres` when this process is root. */
function command(bin: string, args: readonly string[]): [string, string[]] {
  return asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, [...args]];
}

/**
 * Makes a cluster in a fresh temporary directory and starts it.
 * @throws Error when the binaries are absent ({@link POSTGRES_MISSING}) or the server does not start
 */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinaries;
  if (bin === undefined) throw new Error(POSTGRES_MISSING);
  // As root the cluster belongs to `postgres`, who must reach the directory: /tmp, not a private TMPDIR.
  const dir = await mkdtemp(join(asRoot ? '/tmp' : tmpdir(), 'pkcs11-ha-pg-'));
  if (asRoot) {
    const { stdout } = await execFileAsync('id', ['-u', 'postgres']);
    const { stdout: gid } = await execFileAsync('id', ['-g', 'postgres']);
    await chown(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const data = join(dir, 'data');
  const [initdb, initArgs] = command(join(bin, 'initdb'), ['-D', data, '--auth=trust', '--username=postgres', '--no-sync', '--encoding=UTF8', '--locale=C']);
  await execFileAsync(initdb, initArgs, { timeout: 60_000 });
  let pid: number | undefined;

  const start = async (): Promise<void> => {
    // No TCP listener: the socket in the private directory is the only way in.
    const [postgres, args] = command(join(bin, 'postgres'), ['-D', data, '-k', dir, '-c', "listen_addresses=", '-c', 'fsync=off', '-c', 'max_connections=60']);
    const child = spawn(postgres, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: false });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    let exited = false;
    child.on('exit', () => {
      exited = true;
    });
    // The pid file's status line reads `ready` once the server accepts connections.
    const pidFile = join(data, 'postmaster.pid');
    const ready = () => existsSync(pidFile) && /^ready\s*$/m.test(readFileSync(pidFile, 'utf8'));
    await until(() => exited || ready(), 'PostgreSQL to accept connections', 30_000, 20);
    if (exited) throw new Error(`postgres did not start: ${stderr}`);
    // The postmaster's own pid (runuser is its parent).
    pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  };

  const stop = async (options: { immediate?: boolean } = {}): Promise<void> => {
    if (pid === undefined) return;
    const p = pid;
    pid = undefined;
    try {
      process.kill(p, options.immediate ? 'SIGQUIT' : 'SIGINT');
    } catch {
      return;
    }
    await until(() => isGone(p), 'the postmaster to exit', 30_000, 20);
  };

  await start();
  return {
    connectionString: `postgresql://postgres@localhost/postgres?host=${encodeURIComponent(dir)}`,
    socketDir: dir,
    get pid() {
      return pid;
    },
    stop,
    start,
    async dispose() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
