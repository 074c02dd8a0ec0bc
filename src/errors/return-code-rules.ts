/**
 * Named rules on return codes, beside the classification table (`classification.ts`).
 * The table says how a code bears on member health; a rule here says what one particular
 * code, or one kind of error, means to a caller of members: find the object again, stop
 * retrying a PIN, take a logout as done, probe the member, count a copy as uncertain.
 * A new rule goes here, with its reason and a test in test/errors/; code elsewhere asks
 * the rule by name instead of comparing CKR names itself. (The user-not-logged-in rule
 * changes a code's class, so it lives in the table's file: `classifyAnswer`.)
 *
 * Every rule takes what a member call threw (`unknown`) and is false for anything that is
 * not the kind of error it names, so rules can be asked in any order.
 */
import { HaError } from './ha-error.js';

/** The fields of a `Pkcs11Error` the rules read; checked by brand and code, not instanceof. */
interface AnswerFields {
  readonly ckr?: unknown;
  readonly fault?: unknown;
  readonly unsent?: unknown;
}

/** The CKR name a member answered with, or undefined when `error` is no PKCS#11 answer. */
function answered(error: unknown): string | undefined {
  if (!HaError.is(error) || error.code !== 'ERR_PKCS11') return undefined;
  const ckr = (error as AnswerFields).ckr;
  return typeof ckr === 'string' ? ckr : undefined;
}

/**
 * The member refused its own handle of an object (CKR_OBJECT_HANDLE_INVALID or
 * CKR_KEY_HANDLE_INVALID). With member handles cached this is often a stale handle, not a
 * missing object: SoftHSM, for one, can renumber objects when another process changes the
 * same token. Worth finding the object again by identity once before giving up. (A virtual
 * handle the group never issued is an `InvalidHandleError`, code `ERR_INVALID_HANDLE`: not
 * stale, the caller's.)
 *
 * @example
 * if (isStaleHandle(error) && !refound) { await discovery.resolve(object, member.index); retry(); }
 */
export function isStaleHandle(error: unknown): boolean {
  const ckr = answered(error);
  return ckr === 'CKR_OBJECT_HANDLE_INVALID' || ckr === 'CKR_KEY_HANDLE_INVALID';
}

/**
 * The token refused the PIN itself (any CKR_PIN_*: incorrect, invalid, length, expired,
 * locked, too weak). Every one is a caller fault in the table; beyond that, the PIN must
 * not be tried again by a machine: each wrong try brings the token nearer to locking. A
 * member that refuses a PIN the group verified stops automatic recovery.
 */
export function isPinError(error: unknown): boolean {
  return answered(error)?.startsWith('CKR_PIN_') ?? false;
}

/**
 * The token says this application is logged in already (CKR_USER_ALREADY_LOGGED_IN): the
 * login state is token-wide, so other code sharing the module may have logged in. The PIN
 * given was NOT checked: such an answer proves nothing about it.
 */
export function isAlreadyLoggedIn(error: unknown): boolean {
  return answered(error) === 'CKR_USER_ALREADY_LOGGED_IN';
}

/**
 * The token says nobody is logged in (CKR_USER_NOT_LOGGED_IN). For C_Logout this means the
 * logout is done already (another user of the module logged out, or the token restarted).
 */
export function isNotLoggedIn(error: unknown): boolean {
  return answered(error) === 'CKR_USER_NOT_LOGGED_IN';
}

/**
 * The member answered, but its answer cannot say whose fault it is: an ambiguous
 * `Pkcs11Error` (CKR_GENERAL_ERROR, also SoftHSM's answer to a tampered GCM tag) or a
 * command that failed in the module binding without a return code (`ERR_COMMAND`). Such an
 * answer never fails a member on its own: a probe of the member decides. Errors that are no
 * answer of the member (a `ReplicationError`, a bug) are not probed: they say nothing of it.
 */
export function isAmbiguousAnswer(error: unknown): boolean {
  if (!HaError.is(error)) return false;
  if (error.code === 'ERR_COMMAND') return true;
  return error.code === 'ERR_PKCS11' && (error as AnswerFields).fault === 'ambiguous';
}

/**
 * The error takes the member that gave it out of service at once: a member-fault return
 * code (CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_ERROR, ...: see the table) or
 * a lost transport (`ERR_MEMBER_UNREACHABLE`). A passed deadline (`ERR_DEADLINE`) is a
 * member fault too, but not this rule's: the deadline watch fails the member itself.
 */
export function takesMemberOut(error: unknown): boolean {
  if (!HaError.is(error)) return false;
  if (error.code === 'ERR_MEMBER_UNREACHABLE') return true;
  return error.code === 'ERR_PKCS11' && (error as AnswerFields).fault === 'member';
}

/**
 * A member fault after which the command may have taken effect on the member: it failed
 * without an answer (connection lost, deadline passed) or answered a member-fault code.
 * Only a command that never left this process (`MemberUnreachableError.unsent`) is known
 * not to have run. What such a command may have made (a replica) is uncertain: the member
 * owes its deletion.
 */
export function outcomeUnknown(error: unknown): boolean {
  // A deadline error may cross a worker boundary as a plain object: its code is enough.
  if (!HaError.is(error)) return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'ERR_DEADLINE';
  switch (error.code) {
    case 'ERR_MEMBER_UNREACHABLE':
      return (error as AnswerFields).unsent !== true;
    case 'ERR_DEADLINE':
      return true;
    case 'ERR_PKCS11':
      return (error as AnswerFields).fault === 'member';
    default:
      return false;
  }
}
