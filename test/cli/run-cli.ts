/**
 * Runs the `pkcs11-ha` CLI for tests: in this process through `main` (fast, streams
 * captured), or as a child process the way a user starts it (exit code, stderr).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { main } from '../../src/cli/main.js';

/** What a run printed and its exit code. */
export interface CliRun {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Runs `main(args)` in this process; `tty` / `errTty` make stdout / stderr look like a terminal. */
export async function run(args: string[], options: { tty?: boolean; errTty?: boolean } = {}): Promise<CliRun> {
  let out = '';
  let err = '';
  const stream = (append: (s: string) => void, isTTY: boolean) => ({ isTTY, write: (chunk: unknown) => (append(String(chunk)), true) }) as unknown as NodeJS.WritableStream & { isTTY: boolean };
  const code = await main(args, { out: stream((s) => (out += s), options.tty === true), err: stream((s) => (err += s), options.errTty === true) });
  return { code, out, err };
}

const ENTRY = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** Runs the CLI as a child process (`node --import tsx src/cli/main.ts ...`), at most `limitMs`. */
export function spawnCli(args: string[], limitMs = 60_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', TSX, ENTRY, ...args], { timeout: limitMs, encoding: 'utf8' }, (error, out, err) => {
      if (error && typeof error.code !== 'number') reject(error);
      else resolve({ code: typeof error?.code === 'number' ? error.code : 0, out, err });
    });
  });
}

/** A CLI child process still running: what it printed so far and its exit. */
export interface StartedCli {
  readonly child: ChildProcess;
  readonly out: () => string;
  readonly err: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the CLI as a child process and returns at once (for a command that runs until a signal, e.g. `status --watch`). */
export function startCli(args: string[]): StartedCli {
  const child = spawn(process.execPath, ['--import', TSX, ENTRY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  // 'close', not 'exit': the output is all read by then.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  return { child, out: () => out, err: () => err, exited };
}

/** True when `text` holds no stack trace line. */
export const noStack = (text: string): boolean => !/^\s+at .+:\d+/m.test(text);
