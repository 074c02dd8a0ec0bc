/**
 * The error types of pkcs11-ha. Every error the library throws is an {@link HaError}
 * with a stable string `code`; callers branch on `code`, never on the message.
 */

/** Brand that survives two copies of the package being loaded (instanceof does not). */
const BRAND = Symbol.for('pkcs11-ha.error');

/** Stable codes. Adding one is a minor change; renaming one is a breaking change. */
export type HaErrorCode =
  | 'ERR_CONFIG'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_PKCS11'
  | 'ERR_INVALID_HANDLE'
  | 'ERR_NO_MEMBER'
  | 'ERR_MEMBER_UNREACHABLE'
  | 'ERR_DEADLINE'
  | 'ERR_CLOSED'
  | 'ERR_TESTBED'
  | 'ERR_DOMAIN'
  | 'ERR_REPLICATION'
  | 'ERR_COMMAND'
  | 'ERR_JOURNAL'
  | 'ERR_OPERATION_RESTART'
  | 'ERR_ADMIN';

/** How a failure bears on a member's health. See `classification.ts`. */
export type FaultClass = 'member' | 'caller' | 'ambiguous';

/**
 * Base class of every error thrown by pkcs11-ha. Branch on `code` (see {@link HaErrorCode});
 * each code has its subclass (`ERR_DOMAIN`: `DomainError`, `ERR_JOURNAL`: `JournalError`,
 * `ERR_ADMIN`: `AdminError`, the others below), except `ERR_TESTBED`, a plain HaError of the
 * `pkcs11-ha/testbed` entry.
 */
export class HaError extends Error {
  /** Stable machine-readable code. */
  readonly code: HaErrorCode;
  readonly [BRAND] = true;

  constructor(code: HaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }

  /** True for any pkcs11-ha error, even one thrown by another copy of the package. */
  static is(value: unknown): value is HaError {
    return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true;
  }
}

/** Code `ERR_CONFIG`: a configuration value is missing or invalid. `path` names it, e.g. `members[1].token`. */
export class ConfigError extends HaError {
  constructor(readonly path: string, message: string) {
    super('ERR_CONFIG', `${path}: ${message}`);
  }
}

/** Code `ERR_INVALID_ARGUMENT`: an argument given to a public method is invalid; nothing was sent to any member. */
export class InvalidArgumentError extends HaError {
  constructor(message: string) {
    super('ERR_INVALID_ARGUMENT', message);
  }
}

/**
 * Code `ERR_INVALID_HANDLE`: a virtual object handle that this group never issued, one
 * already destroyed, or one that no member shows now (a private object after a logout).
 */
export class InvalidHandleError extends HaError {
  /** The return code a PKCS#11 module would give for it. */
  readonly ckr = 'CKR_OBJECT_HANDLE_INVALID';
  constructor(readonly handle: unknown) {
    super('ERR_INVALID_HANDLE', `unknown object handle ${typeof handle === 'number' ? handle : typeof handle} (CKR_OBJECT_HANDLE_INVALID)`);
  }
}

/** Code `ERR_CLOSED`: the group or session was closed before or during the call. */
export class ClosedError extends HaError {
  constructor(what: string) {
    super('ERR_CLOSED', `${what} is closed`);
  }
}

/** Code `ERR_NO_MEMBER`: no member can serve the call: all that hold the object are failed, or none holds it. */
export class NoMemberAvailableError extends HaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_NO_MEMBER', message, options);
  }
}

/** Code `ERR_MEMBER_UNREACHABLE`: a member's transport failed (connection lost, module crashed). Always a member fault. */
export class MemberUnreachableError extends HaError {
  /**
   * True when the command never left this process (the transport was not connected, or
   * the member closed before a session was free): the member cannot have run it.
   */
  readonly unsent: boolean;

  constructor(readonly member: string, message: string, options?: { cause?: unknown; unsent?: boolean }) {
    super('ERR_MEMBER_UNREACHABLE', `member ${member}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.unsent = options?.unsent ?? false;
  }
}

/** Code `ERR_DEADLINE`: a member's command passed its deadline (no answer, no heartbeat) or its hard ceiling. A member fault. */
export class DeadlineError extends HaError {
  constructor(readonly member: string, message: string, options?: { cause?: unknown }) {
    super('ERR_DEADLINE', `member ${member}: ${message}`, options);
  }
}

/**
 * Code `ERR_PKCS11`: a PKCS#11 function returned something other than CKR_OK. `fn` names
 * the C_ function (`C_Decrypt`, `C_SignInit`, ...), also when the member runs in a host.
 */
export class Pkcs11Error extends HaError {
  /**
   * @param ckr the return code's name, e.g. `CKR_PIN_INCORRECT`
   * @param rv the return code's number
   * @param fn the PKCS#11 function, e.g. `C_Sign`
   * @param member the member that answered, when one did
   * @param fault how the code is classified (see `classifyReturnValue`)
   */
  constructor(
    readonly ckr: string,
    readonly rv: number,
    readonly fn: string,
    readonly member: string | undefined,
    readonly fault: FaultClass,
    options?: { cause?: unknown },
  ) {
    super('ERR_PKCS11', `${fn} failed with ${ckr} (0x${rv.toString(16).padStart(8, '0')})${member ? ` on member ${member}` : ''}`, options);
  }
}

/**
 * Code `ERR_REPLICATION`: a new object could not be given to `minReplicas` members (the
 * group option), so it was not created, or it was removed again from the members that got
 * it. A member that failed while taking its copy may hold one: it owes that copy's removal
 * (counted in `status().owed` until it recovers).
 *
 * @example
 * try {
 *   await session.generateKey('AES_KEY_GEN', template);
 * } catch (error) {
 *   if (error instanceof ReplicationError) retryLater(); // too few members serve now
 *   else throw error;
 * }
 */
export class ReplicationError extends HaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_REPLICATION', message, options);
  }
}

/**
 * Code `ERR_OPERATION_RESTART`: the member running a pinned (multi-part) operation failed, and the operation cannot go
 * on elsewhere: its result depends on the member, or another member refused to take it up.
 * Nothing of it is left on any member: start it again from its Init.
 */
export class OperationRestartError extends HaError {
  constructor(readonly operation: string, readonly member: string, message: string, options?: { cause?: unknown }) {
    super('ERR_OPERATION_RESTART', `${operation} on member ${member}: ${message}; start it again`, options);
  }
}

/**
 * Code `ERR_COMMAND`: a command failed where it ran without a PKCS#11 return code (an unexpected error in
 * the module binding). Classified ambiguous: it never fails a member on its own.
 */
export class CommandError extends HaError {
  constructor(readonly member: string, message: string) {
    super('ERR_COMMAND', `member ${member}: ${message}`);
  }
}
