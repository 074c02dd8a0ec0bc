/**
 * THE classification table (DESIGN rule 1): how each PKCS#11 return code and each
 * transport fault bears on a member's health. Failover reads this and the named rules
 * beside it (`return-code-rules.ts`, re-exported here) and nothing else.
 *
 * - member: this member cannot serve the call; another member can. Fails the member.
 * - caller: the request itself is bad and would fail on any member. Goes back to the
 *   caller and never touches member health, so a caller cannot empty the group.
 * - ambiguous: cannot tell. Must never fail a member on its own.
 *
 * Preconditions the table relies on (the virtual layer guarantees them): the application
 * never sees member session or object handles (rule 3), unknown virtual handles are
 * refused before any member is asked, pool sessions are always logged in (rule 2), and
 * calls that need a login are refused while the virtual session is not logged in.
 */
import {
  HaError,
  Pkcs11Error,
  type FaultClass,
} from './ha-error.js';
import { CKR_OK, CKR_VENDOR_DEFINED, ckrName, toUlong } from './return-codes.js';

// The named rules beside the table, so that failover reads its rules from one module.
export { isAlreadyLoggedIn, isAmbiguousAnswer, isNotLoggedIn, isPinError, isStaleHandle, outcomeUnknown, takesMemberOut } from './return-code-rules.js';

/** A class and the one-line reason why a code belongs to it. */
export interface Classification {
  /** How the failure bears on member health. */
  readonly fault: FaultClass;
  /** Why this class, in one line; for logs and for reviewers of the table. */
  readonly reason: string;
}

type Row = readonly [name: string, fault: FaultClass, reason: string];

// One row per v2.40 code except CKR_OK, in pkcs11t.h order.
const ROWS: readonly Row[] = [
  ['CKR_CANCEL', 'ambiguous', 'a Notify callback cancelled the call; says nothing about the token or the request'],
  ['CKR_HOST_MEMORY', 'member', "the member's module could not allocate host memory; another member (or member host) can serve the call"],
  ['CKR_SLOT_ID_INVALID', 'member', "the caller never names member slots, so the member's configured slot is gone or renumbered"],
  ['CKR_GENERAL_ERROR', 'ambiguous', "SoftHSM answers a tampered AES-GCM tag with it, so it may be the caller's bad ciphertext: never fail a member on it alone"],
  ['CKR_FUNCTION_FAILED', 'ambiguous', 'an unspecified failure of this one call; modules use it for bad input too, so it cannot be pinned on the member'],
  ['CKR_ARGUMENTS_BAD', 'caller', 'the arguments are malformed; every member would reject them the same way'],
  ['CKR_NO_EVENT', 'caller', 'C_WaitForSlotEvent without blocking found no event: an answer to the request, not a sign of ill health'],
  ['CKR_NEED_TO_CREATE_THREADS', 'member', "the member's module cannot run under our C_Initialize threading flags, so it cannot serve at all"],
  ['CKR_CANT_LOCK', 'member', "the member's module cannot provide the locking our C_Initialize asked for, so it cannot serve safely"],
  ['CKR_ATTRIBUTE_READ_ONLY', 'caller', 'the template sets an attribute that cannot be set or changed; every member would refuse it'],
  ['CKR_ATTRIBUTE_SENSITIVE', 'caller', 'the caller asked to read a sensitive attribute; every member must refuse to reveal it'],
  ['CKR_ATTRIBUTE_TYPE_INVALID', 'caller', 'the template names an attribute type the object does not have; every member would refuse it'],
  ['CKR_ATTRIBUTE_VALUE_INVALID', 'caller', 'the template holds an invalid attribute value; every member would refuse it'],
  ['CKR_ACTION_PROHIBITED', 'caller', "the object's or token's policy forbids this action; routing it to another member would only dodge the policy"],
  ['CKR_DATA_INVALID', 'caller', "the caller's input data is invalid for the mechanism; every member would reject it"],
  ['CKR_DATA_LEN_RANGE', 'caller', "the caller's input data has a length the mechanism does not accept; every member would reject it"],
  ['CKR_DEVICE_ERROR', 'member', 'the token or its connection failed; another member can serve the call'],
  ['CKR_DEVICE_MEMORY', 'ambiguous', 'the token is out of memory: may be this member filling up or a caller creating objects without end, so never fail a member on it alone'],
  ['CKR_DEVICE_REMOVED', 'member', 'the token is gone; another member can serve the call'],
  ['CKR_ENCRYPTED_DATA_INVALID', 'caller', "the caller's ciphertext is invalid (e.g. bad padding or tag); every member would reject it"],
  ['CKR_ENCRYPTED_DATA_LEN_RANGE', 'caller', "the caller's ciphertext has a length the mechanism does not accept; every member would reject it"],
  ['CKR_FUNCTION_CANCELED', 'ambiguous', 'the call was cancelled (by a callback or C_CancelFunction) mid-way; neither the token nor the request is known to be at fault'],
  ['CKR_FUNCTION_NOT_PARALLEL', 'caller', 'no function runs in parallel in this session (legacy C_GetFunctionStatus/C_CancelFunction); not a health matter'],
  ['CKR_FUNCTION_NOT_SUPPORTED', 'caller', 'the module lacks this function; members of one group share a module type, and failing members for it would let a caller empty the group'],
  ['CKR_KEY_HANDLE_INVALID', 'ambiguous', 'unknown virtual handles are refused before any member is asked, so this is either a member that lost the key (out of sync) or a handle to a non-key object or one destroyed while the call ran: cannot tell which'],
  ['CKR_KEY_SIZE_RANGE', 'caller', 'the key size is outside what the mechanism supports; every member would refuse it'],
  ['CKR_KEY_TYPE_INCONSISTENT', 'caller', 'the key type does not fit the mechanism; every member would refuse it'],
  ['CKR_KEY_NOT_NEEDED', 'caller', 'C_SetOperationState was given a key the saved state does not need'],
  ['CKR_KEY_CHANGED', 'caller', 'C_SetOperationState was given a different key than the saved state used'],
  ['CKR_KEY_NEEDED', 'caller', 'C_SetOperationState needs a key the caller did not give'],
  ['CKR_KEY_INDIGESTIBLE', 'caller', 'C_DigestKey cannot digest this key; every member would refuse it'],
  ['CKR_KEY_FUNCTION_NOT_PERMITTED', 'caller', "the key's attributes forbid this use (e.g. CKA_SIGN false); every member holds the same attributes"],
  ['CKR_KEY_NOT_WRAPPABLE', 'caller', 'the key may not be wrapped with this key or mechanism; every member would refuse it'],
  ['CKR_KEY_UNEXTRACTABLE', 'caller', 'the key is not extractable; every member must refuse to wrap it'],
  ['CKR_MECHANISM_INVALID', 'caller', 'the mechanism is unknown or not allowed for this call; members share a module type, and failing members for it would let a caller empty the group'],
  ['CKR_MECHANISM_PARAM_INVALID', 'caller', "the mechanism's parameters are invalid; every member would reject them"],
  ['CKR_OBJECT_HANDLE_INVALID', 'ambiguous', 'unknown virtual handles are refused before any member is asked, so this is either a member that lost the object (out of sync) or an object destroyed while the call ran: cannot tell which'],
  ['CKR_OPERATION_ACTIVE', 'caller', 'an operation is already active in this session; the call conflicts with the session state, not with the member'],
  ['CKR_OPERATION_NOT_INITIALIZED', 'caller', 'no operation of this kind was initialised in this session; the call is out of order'],
  ['CKR_PIN_INCORRECT', 'caller', 'wrong PIN; every member would refuse it (and retrying it elsewhere would lock more tokens)'],
  ['CKR_PIN_INVALID', 'caller', 'the PIN has characters the token does not accept; every member would refuse it'],
  ['CKR_PIN_LEN_RANGE', 'caller', 'the PIN is too long or too short; every member would refuse it'],
  ['CKR_PIN_EXPIRED', 'caller', 'the PIN has expired and must be changed by its owner; not something failover can fix'],
  ['CKR_PIN_LOCKED', 'caller', 'the PIN is locked after wrong attempts; its owner must unlock it, and trying other members would lock them too'],
  ['CKR_SESSION_CLOSED', 'member', 'member sessions belong to the pool, never to the caller, so the member closed our session under us; another member can serve the call'],
  ['CKR_SESSION_COUNT', 'member', 'the member has run out of sessions; another member can serve the call'],
  ['CKR_SESSION_HANDLE_INVALID', 'member', 'member sessions belong to the pool, never to the caller, so the member lost our session (e.g. after it restarted); another member can serve the call'],
  ['CKR_SESSION_PARALLEL_NOT_SUPPORTED', 'caller', 'C_OpenSession without CKF_SERIAL_SESSION; every member would refuse it'],
  ['CKR_SESSION_READ_ONLY', 'caller', 'the call writes but the session is read-only; every member would refuse it'],
  ['CKR_SESSION_EXISTS', 'caller', 'sessions are open, so the token cannot be initialised; the request conflicts with state, the member is fine'],
  ['CKR_SESSION_READ_ONLY_EXISTS', 'caller', 'the SO cannot log in while read-only sessions exist; the request conflicts with state, the member is fine'],
  ['CKR_SESSION_READ_WRITE_SO_EXISTS', 'caller', 'a read-only session cannot open while the SO is logged in; the request conflicts with state, the member is fine'],
  ['CKR_SIGNATURE_INVALID', 'caller', 'the signature does not verify; every member would say the same'],
  ['CKR_SIGNATURE_LEN_RANGE', 'caller', 'the signature has the wrong length; every member would say the same'],
  ['CKR_TEMPLATE_INCOMPLETE', 'caller', 'the template lacks attributes the object needs; every member would refuse it'],
  ['CKR_TEMPLATE_INCONSISTENT', 'caller', 'the template holds conflicting attributes; every member would refuse it'],
  ['CKR_TOKEN_NOT_PRESENT', 'member', "the member's token is not in its slot; another member can serve the call"],
  ['CKR_TOKEN_NOT_RECOGNIZED', 'member', "the member's module does not recognise its token; another member can serve the call"],
  ['CKR_TOKEN_WRITE_PROTECTED', 'ambiguous', "a token-wide state, not the request: may be one misconfigured member, but every member says it if the group's tokens are read-only, so never fail a member on it alone"],
  ['CKR_UNWRAPPING_KEY_HANDLE_INVALID', 'ambiguous', 'like CKR_KEY_HANDLE_INVALID for the unwrapping key: a member that lost it or a handle that is no key; cannot tell which'],
  ['CKR_UNWRAPPING_KEY_SIZE_RANGE', 'caller', 'the unwrapping key size does not fit the mechanism; every member would refuse it'],
  ['CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT', 'caller', 'the unwrapping key type does not fit the mechanism; every member would refuse it'],
  ['CKR_USER_ALREADY_LOGGED_IN', 'caller', 'the session is already logged in; the request conflicts with session state, the member is fine'],
  ['CKR_USER_NOT_LOGGED_IN', 'ambiguous', 'a member that lost its login says it, but so does SoftHSM for a CKA_ALWAYS_AUTHENTICATE key used without re-authentication, and so would every member after another user of the same module logged out: never fail a member on it alone'],
  ['CKR_USER_PIN_NOT_INITIALIZED', 'member', 'this token has no user PIN yet (not provisioned), so it cannot serve; a provisioned member can'],
  ['CKR_USER_TYPE_INVALID', 'caller', 'the user type is not CKU_SO, CKU_USER or CKU_CONTEXT_SPECIFIC; every member would refuse it'],
  ['CKR_USER_ANOTHER_ALREADY_LOGGED_IN', 'caller', 'another user is logged in; the login conflicts with session state, the member is fine'],
  ['CKR_USER_TOO_MANY_TYPES', 'caller', 'the token cannot hold one more user type logged in at once; the login conflicts with state, the member is fine'],
  ['CKR_WRAPPED_KEY_INVALID', 'caller', 'the wrapped key blob is invalid for this unwrapping key; every member would reject it'],
  ['CKR_WRAPPED_KEY_LEN_RANGE', 'caller', 'the wrapped key blob has the wrong length; every member would reject it'],
  ['CKR_WRAPPING_KEY_HANDLE_INVALID', 'ambiguous', 'like CKR_KEY_HANDLE_INVALID for the wrapping key: a member that lost it or a handle that is no key; cannot tell which'],
  ['CKR_WRAPPING_KEY_SIZE_RANGE', 'caller', 'the wrapping key size does not fit the mechanism; every member would refuse it'],
  ['CKR_WRAPPING_KEY_TYPE_INCONSISTENT', 'caller', 'the wrapping key type does not fit the mechanism; every member would refuse it'],
  ['CKR_RANDOM_SEED_NOT_SUPPORTED', 'caller', 'the token does not take seed material; members share a module type, so every member would refuse it'],
  ['CKR_RANDOM_NO_RNG', 'caller', 'the token has no random generator; members share a module type, so failing members for it would let a caller empty the group'],
  ['CKR_DOMAIN_PARAMS_INVALID', 'caller', 'the domain parameters are invalid or unsupported; every member would reject them'],
  ['CKR_CURVE_NOT_SUPPORTED', 'caller', 'the EC curve is not supported; members share a module type, so every member would refuse it'],
  ['CKR_BUFFER_TOO_SMALL', 'caller', 'the output buffer is too small; a property of the request, not of the member'],
  ['CKR_SAVED_STATE_INVALID', 'caller', 'the saved operation state given to C_SetOperationState is invalid'],
  ['CKR_INFORMATION_SENSITIVE', 'caller', 'the operation state holds sensitive data and may not be saved; every member would refuse it'],
  ['CKR_STATE_UNSAVEABLE', 'caller', 'this operation state cannot be saved; every member would refuse it'],
  ['CKR_CRYPTOKI_NOT_INITIALIZED', 'member', "the member's module is not initialised (e.g. it was finalised or restarted); another member can serve the call"],
  ['CKR_CRYPTOKI_ALREADY_INITIALIZED', 'caller', 'C_Initialize was called twice on one module; the init path treats it as success, and it says nothing about the token'],
  ['CKR_MUTEX_BAD', 'member', "the member's module reports a broken mutex; its locking can no longer be trusted"],
  ['CKR_MUTEX_NOT_LOCKED', 'member', "the member's module unlocked a mutex it did not hold; its locking can no longer be trusted"],
  ['CKR_NEW_PIN_MODE', 'caller', 'the OTP token asks for a new PIN mode; an answer to the caller, not a health matter'],
  ['CKR_NEXT_OTP', 'caller', 'the OTP token asks for the next one-time password; an answer to the caller, not a health matter'],
  ['CKR_EXCEEDED_MAX_ITERATIONS', 'ambiguous', 'an iterative algorithm (e.g. key or parameter generation) gave up; a retry may succeed, and it tells nothing about health'],
  ['CKR_FIPS_SELF_TEST_FAILED', 'member', 'the token failed its self test and refuses service; another member can serve the call'],
  ['CKR_LIBRARY_LOAD_FAILED', 'member', "the member's module could not load a library it needs; another member can serve the call"],
  ['CKR_PIN_TOO_WEAK', 'caller', 'the new PIN is too weak for the token policy; every member would refuse it'],
  ['CKR_PUBLIC_KEY_INVALID', 'caller', 'the public key given (e.g. an ECDH peer point) is invalid; every member would reject it'],
  ['CKR_FUNCTION_REJECTED', 'caller', 'a person or policy at the token refused the request; retrying it elsewhere would route around the refusal'],
  ['CKR_VENDOR_DEFINED', 'ambiguous', "vendor-defined: its meaning is private to the module, so never fail a member on it alone"],
];

function buildClasses(): Map<string, Classification> {
  const map = new Map<string, Classification>();
  for (const [name, fault, reason] of ROWS) {
    if (map.has(name)) throw new Error(`classification table lists ${name} twice`);
    map.set(name, Object.freeze({ fault, reason }));
  }
  return map;
}

/**
 * THE classification of every PKCS#11 v2.40 return code except CKR_OK, keyed by CKR name.
 * Failover decides from this table alone (DESIGN rule 1).
 */
export const RETURN_CODE_CLASSES: ReadonlyMap<string, Classification> = buildClasses();

const UNKNOWN_REASON = 'unknown return code: cannot tell whose fault it is, so never fail a member on it alone';
const VENDOR_REASON = "vendor-defined code: its meaning is private to the module, so never fail a member on it alone";

/**
 * Classifies a PKCS#11 return value. Unknown and vendor-defined codes are ambiguous.
 * @throws TypeError for CKR_OK (0), which is not a failure, and for values that are no
 *   CK_ULONG; asking about either is a bug in the caller of this function.
 */
export function classifyReturnValue(rv: number): Classification & { readonly ckr: string } {
  const value = toUlong(rv);
  if (value === undefined) throw new TypeError(`not a PKCS#11 return value: ${String(rv)}`);
  if (value === CKR_OK) throw new TypeError('CKR_OK is not a failure and has no fault class');
  const ckr = ckrName(value);
  const known = RETURN_CODE_CLASSES.get(ckr);
  if (known) return { ckr, fault: known.fault, reason: known.reason };
  return { ckr, fault: 'ambiguous', reason: value >= CKR_VENDOR_DEFINED ? VENDOR_REASON : UNKNOWN_REASON };
}

const BEFORE_LOGIN_REASON = 'the group never logged this member in: the call was made before C_Login, which is the caller\'s doing';

/**
 * Classifies a member's answer, knowing the member's login state: the table's class, but
 * for the user-not-logged-in rule. CKR_USER_NOT_LOGGED_IN is ambiguous in the table (a
 * member that lost its login, or a CKA_ALWAYS_AUTHENTICATE key used without
 * re-authentication); from a member the group never logged in it is plainly the caller's.
 *
 * @param member whether the group logged the answering member in
 * @throws TypeError as {@link classifyReturnValue}
 * @example
 * const { ckr, fault } = classifyAnswer(rv, { loggedIn: member.loggedIn });
 */
export function classifyAnswer(rv: number, member: { readonly loggedIn: boolean }): Classification & { readonly ckr: string } {
  const classification = classifyReturnValue(rv);
  if (classification.ckr === 'CKR_USER_NOT_LOGGED_IN' && !member.loggedIn) return { ckr: classification.ckr, fault: 'caller', reason: BEFORE_LOGIN_REASON };
  return classification;
}

function hasCode(value: unknown): value is { code: unknown } {
  return typeof value === 'object' && value !== null && 'code' in value;
}

function isFaultClass(value: unknown): value is FaultClass {
  return value === 'member' || value === 'caller' || value === 'ambiguous';
}

/**
 * How an error bears on member health: a {@link Pkcs11Error} carries its own fault;
 * MemberUnreachableError and any error with code `ERR_DEADLINE` are member faults;
 * InvalidArgumentError and InvalidHandleError are caller faults; a raw pkcs11js error is
 * classified by its return code; anything else is ambiguous.
 */
export function classifyError(error: unknown): FaultClass {
  if (HaError.is(error)) {
    switch (error.code) {
      case 'ERR_PKCS11': {
        const fault = (error as Partial<Pkcs11Error>).fault;
        return isFaultClass(fault) ? fault : 'ambiguous';
      }
      case 'ERR_MEMBER_UNREACHABLE':
      case 'ERR_DEADLINE':
        return 'member';
      case 'ERR_INVALID_ARGUMENT':
      case 'ERR_INVALID_HANDLE':
        return 'caller';
      default:
        return 'ambiguous';
    }
  }
  // A deadline error may come from a transport that does not use HaError (e.g. across a
  // worker boundary as a plain object); the code alone is enough to know it.
  if (hasCode(error) && error.code === 'ERR_DEADLINE') return 'member';
  const pkcs11 = toPkcs11Error(error, '', undefined);
  return pkcs11 ? pkcs11.fault : 'ambiguous';
}

const CKR_MESSAGE = /^CKR_[A-Z0-9_]+(?::\d+)?$/;
const FUNCTION_NAME = /^C_[A-Za-z]{1,40}$/;

/**
 * Turns an error thrown by pkcs11js (numeric `code`, message `CKR_X:160` or `CKR_X`), or a
 * plain `{ code: number, method?: string }` passed across a worker thread, into a
 * {@link Pkcs11Error} classified by {@link classifyReturnValue}. A Pkcs11Error is returned
 * as it is. Gives undefined when `cause` is no PKCS#11 failure (including code 0).
 * The message holds only the function, CKR name, number and member: never PINs or data.
 * @param fn the PKCS#11 function called, e.g. `C_Sign`; when empty, the error's `method`
 * @param member the member that answered, when one did
 */
export function toPkcs11Error(cause: unknown, fn: string, member: string | undefined): Pkcs11Error | undefined {
  if (HaError.is(cause)) return cause.code === 'ERR_PKCS11' ? (cause as Pkcs11Error) : undefined;
  if (!hasCode(cause) || typeof cause.code !== 'number') return undefined;
  // An Error with a numeric code is only taken for PKCS#11 when it says so: pkcs11js sets
  // code 0 on other native errors, but other libraries use numeric codes too.
  if (cause instanceof Error && cause.name !== 'Pkcs11Error' && !CKR_MESSAGE.test(cause.message)) return undefined;
  const rv = toUlong(cause.code);
  if (rv === undefined || rv === CKR_OK) return undefined;
  const method = (cause as { method?: unknown }).method;
  // `method` may come from another thread: only a function name may reach the message.
  const fnName = fn || (typeof method === 'string' && FUNCTION_NAME.test(method) ? method : 'C_?');
  const { ckr, fault } = classifyReturnValue(rv);
  // Keep a real Error as the cause for its stack; a plain object from a worker may carry
  // anything, so it is not kept.
  return new Pkcs11Error(ckr, rv, fnName, member, fault, cause instanceof Error ? { cause } : undefined);
}
