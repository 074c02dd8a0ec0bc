/**
 * Runs app-server.ts as a separate application process (node --import tsx) and talks to
 * it over IPC: the second server of fleet tests, with its own member host processes.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { GroupConfig } from '../../src/group/group-config.js';
import type { GroupStatus } from '../../src/group/group-status.js';
import { until } from './until.js';

const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const ENTRY = fileURLToPath(new URL('./app-server.ts', import.meta.url));

/** An application process serving one group. */
export interface AppProcess {
  readonly pid: number;
  /** Events it reported, in order (e.g. `resyncProgress`). */
  readonly events: readonly Record<string, unknown>[];
  find(label: string): Promise<{ count: number; holders: string[][] }>;
  encrypt(label: string, iv: Buffer, data: Buffer): Promise<Buffer>;
  decrypt(label: string, iv: Buffer, data: Buffer): Promise<Buffer>;
  /** How many objects labelled `label` the token of member `index` holds, seen through this process's host of it. */
  onToken(index: number, label: string): Promise<number>;
  status(): Promise<GroupStatus>;
  /** Closes its group and waits for it to exit (killed after `limitMs`). */
  close(limitMs?: number): Promise<void>;
}

/** Starts the process; resolves once its group is open and logged in. */
export async function startAppProcess(config: GroupConfig, pin: string, limitMs = 60_000): Promise<AppProcess> {
  const child: ChildProcess = fork(ENTRY, [], {
    execArgv: ['--import', TSX],
    env: { ...process.env, APP_CONFIG: JSON.stringify(config), APP_PIN: pin },
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const events: Record<string, unknown>[] = [];
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let ready = false;
  let exited = false;
  let nextId = 1;
  child.on('message', (m: { ready?: boolean; event?: string; id?: number; result?: unknown; error?: { message: string; code?: string } }) => {
    if (m.ready) ready = true;
    else if (m.event !== undefined) events.push(m as Record<string, unknown>);
    else if (m.id !== undefined) {
      const w = waiting.get(m.id);
      waiting.delete(m.id);
      if (m.error) w?.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
      else w?.resolve(m.result);
    }
  });
  child.on('exit', () => {
    exited = true;
    for (const w of waiting.values()) w.reject(new Error('the application process exited'));
    waiting.clear();
  });
  await until(() => ready || exited, 'the application process to open its group', limitMs, 20);
  if (!ready) throw new Error('the application process exited before its group opened');
  const call = <T>(request: Record<string, unknown>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ ...request, id });
    });
  return {
    pid: child.pid!,
    events,
    find: (label) => call({ op: 'find', label }),
    encrypt: async (label, iv, data) => Buffer.from(await call<Uint8Array>({ op: 'encrypt', label, iv, data })),
    decrypt: async (label, iv, data) => Buffer.from(await call<Uint8Array>({ op: 'decrypt', label, iv, data })),
    onToken: (index, label) => call({ op: 'onToken', index, label }),
    status: () => call({ op: 'status' }),
    async close(limit = 30_000) {
      if (exited) return;
      await call({ op: 'close' }).catch(() => undefined);
      try {
        await until(() => exited, 'the application process to exit', limit, 20);
      } catch {
        child.kill('SIGKILL');
        await until(() => exited, 'the application process to die', 5_000, 20);
      }
    },
  };
}
