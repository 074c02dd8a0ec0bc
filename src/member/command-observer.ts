/**
 * A hook told of each command a member sends, for the group's metrics and diagnostics
 * channels. Handed to the member at construction, so the member never knows who listens;
 * without one (or while nobody listens) a command costs one call and a comparison more.
 */
import type { HaError } from '../errors/ha-error.js';
import type { CommandName } from '../pkcs11/commands.js';

/** Told when a member's commands start and end. */
export interface CommandObserver {
  /** A command starts: returns the mark to give `ended` (its start time), or -1 when nobody listens. */
  started(): number;
  /**
   * The command ended: `error` is undefined on success, else the typed error it ended with.
   * Not called for a command whose `started()` gave -1.
   */
  ended(member: string, op: CommandName, startedAt: number, error: HaError | undefined): void;
}
