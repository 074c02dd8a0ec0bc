/**
 * FOR CHAOS RUNS ONLY (`npm run chaos`, docs/reliability.md): makes a member host's module
 * answer with chosen return codes, or slow down, on the harness's word. A host loads this
 * file only when its member's module environment names a control file
 * ({@link INJECT_FAULTS_ENV}); a production configuration never does, and then nothing here
 * is loaded at all.
 *
 * The harness writes the control file (JSON {@link InjectedFaults}) and sends the host
 * SIGUSR2; the host reads it then, and only then: a host that the group restarts starts
 * clean, as a real module would after its process was replaced. An unreadable or invalid
 * file clears every fault (and says so on stderr).
 *
 * Injected errors look like the module's own answers (a {@link CommandFailedError} with
 * the return value and the C_ function), so the client classifies them exactly as it would
 * a real token's. A delay blocks the host's main thread for inline calls, as a slow token
 * would, and is a timer for calls that go to the worker threads.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ckrName } from '../errors/return-codes.js';
import type { Command, CommandName } from '../pkcs11/commands.js';
import type { InProcessTransport } from '../transport/in-process-transport.js';
import { CommandFailedError } from '../transport/transport.js';

/** The module environment variable that names the control file and turns injection on. */
export const INJECT_FAULTS_ENV = 'PKCS11_HA_INJECT_FAULTS';

/** What the control file asks of the host. An empty object clears every fault. */
export interface InjectedFaults {
  /** Answer commands with this return value instead of running them. */
  readonly error?: {
    /** The return value, e.g. 0x30 (CKR_DEVICE_ERROR). */
    readonly rv: number;
    /** Commands (`op` names, e.g. `sign`) it applies to; all when absent. */
    readonly ops?: readonly string[];
    /** How many commands fail; every matching one until cleared when absent. */
    readonly count?: number;
  };
  /** Milliseconds added to every command (a slow token). */
  readonly delayMs?: number;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Reads the control file; an unusable one clears every fault. */
export function readInjectedFaults(path: string): InjectedFaults {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as InjectedFaults | null;
    return typeof value === 'object' && value !== null ? value : {};
  } catch (error) {
    process.stderr.write(`injected faults: ${path} unreadable, faults cleared: ${(error as Error).message}\n`);
    return {};
  }
}

/** `C_Sign` for `sign`, as the module would name the function that failed. */
function functionOf(op: string): string {
  return `C_${op.charAt(0).toUpperCase()}${op.slice(1)}`;
}

/**
 * Wraps `transport`'s `execute` and `runHere` so that they obey the control file at
 * `controlPath`, re-read on each SIGUSR2. Until the first signal nothing is injected.
 */
export function injectFaults(transport: InProcessTransport, controlPath: string): void {
  let faults: InjectedFaults = {};
  let left = 0;
  process.on('SIGUSR2', () => {
    faults = readInjectedFaults(controlPath);
    left = faults.error?.count ?? Infinity;
  });
  /** The error this command gets now, if any (counts it). */
  const injected = (op: string): CommandFailedError | undefined => {
    const e = faults.error;
    if (e === undefined || left <= 0 || (e.ops !== undefined && !e.ops.includes(op))) return undefined;
    left--;
    return new CommandFailedError({ rv: e.rv, fn: functionOf(op), message: ckrName(e.rv) });
  };
  const execute = transport.execute.bind(transport);
  const runHere = transport.runHere.bind(transport);
  transport.execute = (async (command: Extract<Command, { op: CommandName }>) => {
    const delay = faults.delayMs ?? 0;
    if (delay > 0) await sleep(delay);
    const error = injected(command.op);
    if (error !== undefined) throw error;
    return execute(command);
  }) as typeof transport.execute;
  transport.runHere = ((command: Extract<Command, { op: CommandName }>, output?: Buffer) => {
    const delay = faults.delayMs ?? 0;
    if (delay > 0) Atomics.wait(sleeper, 0, 0, delay);
    const error = injected(command.op);
    if (error !== undefined) throw error;
    return runHere(command, output);
  }) as typeof transport.runHere;
}
