/** Messages between the main thread and a command worker. */
import type { Command, WireError } from '../pkcs11/commands.js';

/** A batch of commands for one worker, run in order. */
export interface BatchRequest {
  readonly id: number;
  readonly commands: readonly Command[];
}

/** What one command gave. */
export type CommandOutcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: WireError };

/** The answer to one {@link BatchRequest}, outcomes in the same order. */
export interface BatchReply {
  readonly id: number;
  readonly outcomes: readonly CommandOutcome[];
}
