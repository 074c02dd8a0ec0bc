/**
 * A member's module loaded in this process: pkcs11js on worker threads that make
 * synchronous calls (see `worker-pool.ts` for why). A crash in the module still takes
 * the whole process down; only a member host process isolates that.
 */
import type { Command, CommandName, CommandResult } from '../pkcs11/commands.js';
import { acquireModule, releaseModule, type LoadedModule } from '../pkcs11/module-registry.js';
import { pkcs11js } from '../pkcs11/pkcs11js.js';
import { MemberUnreachableError } from '../errors/ha-error.js';
import type { TokenInfo, Transport } from './transport.js';
import { WorkerPool } from './worker-pool.js';
import { runCommand, toWireError } from '../pkcs11/run-command.js';
import { CommandFailedError } from './transport.js';

/** Which token of a module a member is: by label or by serial number. */
export type TokenSelector = { readonly label: string } | { readonly serial: string };

/** Options of an {@link InProcessTransport}. */
export interface InProcessTransportOptions {
  /** Member name, for errors. */
  readonly member: string;
  /** Path of the PKCS#11 module file. */
  readonly modulePath: string;
  /** Environment the module reads at C_Initialize (e.g. SOFTHSM2_CONF). */
  readonly moduleEnv: Readonly<Record<string, string>>;
  readonly token: TokenSelector;
  /** Worker threads for this member. @default 2 */
  readonly threads: number;
  /** Where in the config this member is, for errors. */
  readonly configPath: string;
}

const trim = (s: string): string => s.replace(/[\s\0]+$/, '');

/** Runs a member's commands in this process. */
export class InProcessTransport implements Transport {
  readonly kind = 'in-process';
  readonly #options: InProcessTransportOptions;
  #module: LoadedModule | undefined;
  #pool: WorkerPool | undefined;
  #listeners: ((error: Error) => void)[] = [];
  #closed = false;

  constructor(options: InProcessTransportOptions) {
    this.#options = options;
  }

  async connect(): Promise<TokenInfo> {
    const o = this.#options;
    if (this.#closed) throw new MemberUnreachableError(o.member, 'transport closed');
    const module = acquireModule(o.modulePath, o.moduleEnv, `${o.configPath}.module`);
    this.#module = module;
    try {
      const info = findToken(module, o.token, o.member);
      const pool = await WorkerPool.start(module.path, { threads: o.threads }, (error) => {
        if (this.#closed) return;
        for (const l of this.#listeners.splice(0)) l(new MemberUnreachableError(o.member, error.message, { cause: error }));
      });
      if (this.#closed) {
        // Closed while the threads started: close() found no pool, so stop them here.
        await pool.close();
        if (this.#module) releaseModule(this.#module);
        this.#module = undefined;
        throw new MemberUnreachableError(o.member, 'transport closed');
      }
      this.#pool = pool;
      return info;
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  get pending(): number {
    return this.#pool?.pending ?? 0;
  }

  execute<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    const pool = this.#pool;
    if (pool === undefined) return Promise.reject(new MemberUnreachableError(this.#options.member, 'not connected', { unsent: true }));
    return pool.run(command) as Promise<CommandResult<N>>;
  }

  /**
   * Runs a command on the calling thread with a synchronous call (the caller's thread
   * blocks for its whole length). Throws {@link CommandFailedError} when the module
   * answers with an error.
   * @param output where a byte result is written (the result is a view of it); room for
   *   the input's length plus 1 KiB. @default a new buffer
   */
  runHere<N extends CommandName>(command: Extract<Command, { op: N }>, output?: Buffer): CommandResult<N> {
    const module = this.#module;
    if (module === undefined || this.#pool === undefined) throw new MemberUnreachableError(this.#options.member, 'not connected', { unsent: true });
    try {
      return runCommand(module.pkcs11, command, output);
    } catch (error) {
      throw new CommandFailedError(toWireError(error));
    }
  }

  onDisconnect(listener: (error: Error) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pool = this.#pool;
    this.#pool = undefined;
    // Threads must be gone before the module is finalized under them.
    await pool?.close();
    if (this.#module) releaseModule(this.#module);
    this.#module = undefined;
  }
}

function findToken(module: LoadedModule, selector: TokenSelector, member: string): TokenInfo {
  const p = module.pkcs11;
  const seen: string[] = [];
  for (const slot of p.C_GetSlotList(true)) {
    const t = p.C_GetTokenInfo(slot);
    // SoftHSM always lists one empty, uninitialized slot as present.
    if ((t.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) continue;
    const info: TokenInfo = {
      slot,
      label: trim(t.label),
      serial: trim(t.serialNumber),
      manufacturer: trim(t.manufacturerID),
      model: trim(t.model),
    };
    seen.push(`${info.label} (${info.serial})`);
    if ('label' in selector ? info.label === selector.label : info.serial === selector.serial) return info;
  }
  const wanted = 'label' in selector ? `label ${JSON.stringify(selector.label)}` : `serial ${JSON.stringify(selector.serial)}`;
  throw new MemberUnreachableError(member, `no initialized token with ${wanted}; the module shows: ${seen.join(', ') || 'none'}`);
}
