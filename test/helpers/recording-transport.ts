/**
 * A transport that records every command it carries and every result it returns, so a
 * test can search what passed between the library and each member (for key bytes).
 */
import type { Command, CommandName, CommandResult } from '../../src/pkcs11/commands.js';
import type { TokenInfo, Transport } from '../../src/transport/transport.js';

/** One recorded exchange. */
export interface Exchange {
  readonly member: string;
  readonly command: Command;
  readonly result?: unknown;
  readonly error?: unknown;
}

/** Wraps a real transport and appends every exchange to `log`. */
export class RecordingTransport implements Transport {
  readonly kind: string;
  constructor(
    readonly member: string,
    readonly inner: Transport,
    readonly log: Exchange[],
  ) {
    this.kind = inner.kind;
  }

  connect(): Promise<TokenInfo> {
    return this.inner.connect();
  }

  get pending(): number {
    return this.inner.pending;
  }

  async execute<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    try {
      const result = await this.inner.execute<N>(command);
      this.log.push({ member: this.member, command, result });
      return result;
    } catch (error) {
      this.log.push({ member: this.member, command, error });
      throw error;
    }
  }

  onDisconnect(listener: (error: Error) => void): void {
    this.inner.onDisconnect(listener);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** True when `needle` occurs in any Buffer or string reachable from `value`. */
export function containsBytes(value: unknown, needle: Buffer, seen = new Set<unknown>()): boolean {
  if (value === null || value === undefined) return false;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).includes(needle);
  if (typeof value === 'string') return value.includes(needle.toString('hex')) || value.includes(needle.toString('base64')) || Buffer.from(value, 'latin1').includes(needle);
  if (typeof value !== 'object' || seen.has(value)) return false;
  seen.add(value);
  if (value instanceof Error) return containsBytes(value.message, needle, seen) || containsBytes(value.stack, needle, seen) || containsBytes((value as { cause?: unknown }).cause, needle, seen);
  return Object.values(value as Record<string, unknown>).some((v) => containsBytes(v, needle, seen));
}
