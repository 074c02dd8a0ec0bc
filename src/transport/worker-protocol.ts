/** Messages between the main thread and a command worker. */
import type { Command, WireError } from '../pkcs11/commands.js';

/**
 * A batch of commands for one worker, run in order: hot commands as one binary frame
 * (`frame-codec.ts`, transferred), anything else as command objects.
 */
export type BatchRequest =
  | { readonly id: number; readonly frame: ArrayBuffer; readonly commands?: undefined }
  | { readonly id: number; readonly frame?: undefined; readonly commands: readonly Command[] };

/** What one command gave. */
export type CommandOutcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: WireError };

/** The answer to one {@link BatchRequest}, outcomes in the same order. */
export type BatchReply =
  | { readonly id: number; readonly frame: ArrayBuffer; readonly length: number; readonly outcomes?: undefined }
  | { readonly id: number; readonly frame?: undefined; readonly outcomes: readonly CommandOutcome[] };
