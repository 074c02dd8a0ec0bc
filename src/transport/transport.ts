/**
 * The seam between a member and the place its PKCS#11 module runs. In-process (worker
 * threads over pkcs11js) today; a member host process over a Unix socket, and later TLS,
 * implement the same interface.
 */
import type { Command, CommandName, CommandResult, Handle, WireError } from '../pkcs11/commands.js';

/** What a transport found when it connected to its token. */
export interface TokenInfo {
  /** The slot holding the token, for `openSession`. */
  readonly slot: Handle;
  readonly label: string;
  readonly serial: string;
  readonly manufacturer: string;
  readonly model: string;
}

/** What {@link Transport.runNow} gives when it cannot run the command on the calling thread now. */
export const NOT_NOW: unique symbol = Symbol('not now');

/** A command failed where it ran: the module answered, the connection is fine. */
export class CommandFailedError extends Error {
  constructor(readonly wire: WireError) {
    super(wire.message);
    this.name = 'CommandFailedError';
  }
}

/**
 * Carries commands to one token. `execute` rejects with {@link CommandFailedError} when
 * the module answered with an error, and with any other error when the transport
 * itself failed (connection lost, thread or process gone): the member treats that as
 * a member fault.
 */
export interface Transport {
  /** A short name of the kind, e.g. `in-process`. */
  readonly kind: string;
  /** Loads or reaches the module and finds the token. */
  connect(): Promise<TokenInfo>;
  /** Runs one command. */
  execute<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>>;
  /**
   * Runs a step of a multi-part operation synchronously, when the transport would make that
   * very call on the calling thread now anyway (in-process, inline, budget left in the
   * slice): spares the promise layers of `execute` for each part of a stream. Gives
   * {@link NOT_NOW} otherwise, and the caller uses `execute`. Throws what `execute` rejects
   * with. Transports that never call on the calling thread leave this out.
   *
   * @param output where an encryptUpdate or decryptUpdate writes its result (the caller's
   *   own buffer, with room for all the step can give); allocated when omitted
   * @internal an optimisation of the in-process transport, not for other transports yet
   */
  runNow?<N extends CommandName>(command: Extract<Command, { op: N }>, output?: Buffer): CommandResult<N> | typeof NOT_NOW;
  /**
   * Calls `callback` on the calling thread when {@link runNow} may run a step there again
   * (the next slice of the event loop, after the calls queued before it); `runNow` made
   * during the callback itself does not give NOT_NOW for lack of a slice. Spares a step
   * that got NOT_NOW only because the slice was spent the promise layers of `execute`.
   *
   * @internal with runNow
   */
  whenNow?(callback: () => void): void;
  /** Commands this transport holds, queued or running (its own view of "busy"). */
  readonly pending: number;
  /**
   * Commands the far side runs or queues for its OTHER clients, as it last reported them
   * (a remote member host shared by several application processes). Transports whose far
   * side serves only this process leave this out.
   */
  readonly hostLoad?: number;
  /** Called at most once, when the connection drops on its own (not on `close`). */
  onDisconnect(listener: (error: Error) => void): void;
  /**
   * Called on each heartbeat: proof that the place running the commands is alive while
   * some of them take long. Each heartbeat extends the deadline of this transport's
   * pending commands (never past the hard ceiling). Transports that cannot send
   * heartbeats (in-process) leave this out.
   *
   * @param listener gets the queue depth the far side reports (commands queued + running there)
   */
  onHeartbeat?(listener: (queueDepth: number) => void): void;
  /**
   * Releases everything; pending commands are rejected. Idempotent.
   *
   * @param options.force the far side failed (hung or gone): stop it at once rather than
   *   give it time to shut down cleanly (a member host is SIGKILLed, not asked to stop)
   */
  close(options?: { readonly force?: boolean }): Promise<void>;
}
