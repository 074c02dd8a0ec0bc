/** A transport that loses the answer of a chosen command after the module ran it. */
import type { Command, CommandName, CommandResult } from '../../src/pkcs11/commands.js';
import type { TokenInfo, Transport } from '../../src/transport/transport.js';
import type { FaultTransport } from './fault-transport.js';

/**
 * Runs a chosen command for real, then drops the connection before its answer arrives:
 * the module did the work and the caller never hears of it (a primary killed during key
 * generation). Everything else goes to the FaultTransport underneath.
 */
export class ReplyLossTransport implements Transport {
  readonly kind: string;
  readonly #lose = new Set<CommandName>();

  constructor(readonly fault: FaultTransport) {
    this.kind = fault.kind;
  }

  /** The next `op` runs, then the connection drops. */
  loseReplyOf(op: CommandName): void {
    this.#lose.add(op);
  }

  connect(): Promise<TokenInfo> {
    return this.fault.connect();
  }

  get pending(): number {
    return this.fault.pending;
  }

  onDisconnect(listener: (error: Error) => void): void {
    this.fault.onDisconnect(listener);
  }

  close(): Promise<void> {
    return this.fault.close();
  }

  async execute<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    if (!this.#lose.delete(command.op)) return this.fault.execute(command);
    await this.fault.execute(command);
    const error = new Error(`connection lost before the answer to ${command.op} (injected)`);
    this.fault.disconnect(error);
    throw error;
  }
}
