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

/** Base class of every error thrown by pkcs11-ha. */
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

/** A configuration value is missing or invalid. `path` names it, e.g. `members[1].token`. */
export class ConfigError extends HaError {
  constructor(readonly path: string, message: string) {
    super('ERR_CONFIG', `${path}: ${message}`);
  }
}

/** An argument given to a public method is invalid; nothing was sent to any member. */
export class InvalidArgumentError extends HaError {
  constructor(message: string) {
    super('ERR_INVALID_ARGUMENT', message);
  }
}

/** A virtual object handle that this group never issued, or one already destroyed. */
export class InvalidHandleError extends HaError {
  /** The return code a PKCS#11 module would give for it. */
  readonly ckr = 'CKR_OBJECT_HANDLE_INVALID';
  constructor(readonly handle: unknown) {
    super('ERR_INVALID_HANDLE', `unknown object handle ${typeof handle === 'number' ? handle : typeof handle} (CKR_OBJECT_HANDLE_INVALID)`);
  }
}

/** The group or session was closed before or during the call. */
export class ClosedError extends HaError {
  constructor(what: string) {
    super('ERR_CLOSED', `${what} is closed`);
  }
}

/** No member can serve the call: all that hold the object are failed, or none holds it. */
export class NoMemberAvailableError extends HaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_NO_MEMBER', message, options);
  }
}

/** A member's transport failed (connection lost, module crashed). Always a member fault. */
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

/** A member's command passed its deadline (no answer, no heartbeat) or its hard ceiling. A member fault. */
export class DeadlineError extends HaError {
  constructor(readonly member: string, message: string, options?: { cause?: unknown }) {
    super('ERR_DEADLINE', `member ${member}: ${message}`, options);
  }
}

/** A PKCS#11 function returned something other than CKR_OK. */
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

/** A key could not be given to enough members (see the `minReplicas` option). */
export class ReplicationError extends HaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_REPLICATION', message, options);
  }
}

/**
 * The member running a pinned (multi-part) operation failed, and the operation cannot go
 * on elsewhere: its result depends on the member, or another member refused to take it up.
 * Nothing of it is left on any member: start it again from its Init.
 */
export class OperationRestartError extends HaError {
  constructor(readonly operation: string, readonly member: string, message: string, options?: { cause?: unknown }) {
    super('ERR_OPERATION_RESTART', `${operation} on member ${member}: ${message}; start it again`, options);
  }
}

/**
 * A command failed where it ran without a PKCS#11 return code (an unexpected error in
 * the module binding). Classified ambiguous: it never fails a member on its own.
 */
export class CommandError extends HaError {
  constructor(readonly member: string, message: string) {
    super('ERR_COMMAND', `member ${member}: ${message}`);
  }
}
