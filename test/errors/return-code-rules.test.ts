/**
 * The named return-code rules beside the classification table: a table of errors and the
 * rules each one satisfies, and how the rules agree with the table's rows.
 */
import { describe, expect, it } from 'vitest';
import {
  CommandError,
  DeadlineError,
  InvalidArgumentError,
  InvalidHandleError,
  MemberUnreachableError,
  NoMemberAvailableError,
  Pkcs11Error,
  ReplicationError,
} from '../../src/errors/ha-error.js';
import { RETURN_CODE_CLASSES, classifyAnswer, classifyReturnValue, toPkcs11Error } from '../../src/errors/classification.js';
import * as fromTable from '../../src/errors/classification.js';
import {
  isAlreadyLoggedIn,
  isAmbiguousAnswer,
  isNotLoggedIn,
  isPinError,
  isStaleHandle,
  outcomeUnknown,
  takesMemberOut,
} from '../../src/errors/return-code-rules.js';
import { ckrValue } from '../../src/errors/return-codes.js';

const RULES = { isStaleHandle, isPinError, isAlreadyLoggedIn, isNotLoggedIn, isAmbiguousAnswer, takesMemberOut, outcomeUnknown };
type Rule = keyof typeof RULES;

/** A member's answer, classified by the table as a Member would type it. */
function answer(ckr: string): Pkcs11Error {
  const rv = ckrValue(ckr)!;
  return new Pkcs11Error(ckr, rv, 'C_Sign', 'm1', classifyReturnValue(rv).fault);
}

describe('return-code rules by table', () => {
  const rows: [string, unknown, Rule[]][] = [
    ['CKR_OBJECT_HANDLE_INVALID', answer('CKR_OBJECT_HANDLE_INVALID'), ['isStaleHandle', 'isAmbiguousAnswer']],
    ['CKR_KEY_HANDLE_INVALID', answer('CKR_KEY_HANDLE_INVALID'), ['isStaleHandle', 'isAmbiguousAnswer']],
    ['CKR_WRAPPING_KEY_HANDLE_INVALID (not one of ours: the caller may hand any key)', answer('CKR_WRAPPING_KEY_HANDLE_INVALID'), ['isAmbiguousAnswer']],
    ['an unknown virtual handle (InvalidHandleError)', new InvalidHandleError(42), []],
    ['CKR_PIN_INCORRECT', answer('CKR_PIN_INCORRECT'), ['isPinError']],
    ['CKR_PIN_LOCKED', answer('CKR_PIN_LOCKED'), ['isPinError']],
    ['CKR_PIN_TOO_WEAK', answer('CKR_PIN_TOO_WEAK'), ['isPinError']],
    ['CKR_USER_ALREADY_LOGGED_IN', answer('CKR_USER_ALREADY_LOGGED_IN'), ['isAlreadyLoggedIn']],
    ['CKR_USER_NOT_LOGGED_IN', answer('CKR_USER_NOT_LOGGED_IN'), ['isNotLoggedIn', 'isAmbiguousAnswer']],
    ['CKR_GENERAL_ERROR', answer('CKR_GENERAL_ERROR'), ['isAmbiguousAnswer']],
    ['CKR_DEVICE_MEMORY', answer('CKR_DEVICE_MEMORY'), ['isAmbiguousAnswer']],
    ['ERR_COMMAND (no return code)', new CommandError('m1', 'sign: native failure'), ['isAmbiguousAnswer']],
    ['CKR_DEVICE_REMOVED', answer('CKR_DEVICE_REMOVED'), ['takesMemberOut', 'outcomeUnknown']],
    ['CKR_TOKEN_NOT_PRESENT', answer('CKR_TOKEN_NOT_PRESENT'), ['takesMemberOut', 'outcomeUnknown']],
    ['CKR_DEVICE_ERROR', answer('CKR_DEVICE_ERROR'), ['takesMemberOut', 'outcomeUnknown']],
    ['CKR_SESSION_HANDLE_INVALID', answer('CKR_SESSION_HANDLE_INVALID'), ['takesMemberOut', 'outcomeUnknown']],
    ['a lost connection', new MemberUnreachableError('m1', 'connection lost'), ['takesMemberOut', 'outcomeUnknown']],
    ['a command never sent', new MemberUnreachableError('m1', 'not connected', { unsent: true }), ['takesMemberOut']],
    ['a passed deadline', new DeadlineError('m1', 'no answer'), ['outcomeUnknown']],
    ['a passed deadline as a plain object from a worker', { code: 'ERR_DEADLINE' }, ['outcomeUnknown']],
    ['CKR_MECHANISM_INVALID', answer('CKR_MECHANISM_INVALID'), []],
    ['an invalid argument', new InvalidArgumentError('bad'), []],
    ['a replication shortfall (no answer of a member)', new ReplicationError('fewer than minReplicas'), []],
    ['no member left', new NoMemberAvailableError('none'), []],
    ['a plain Error', new Error('CKR_PIN_INCORRECT'), []],
    ['a raw pkcs11js error (untyped: rules ask typed errors)', Object.assign(new Error('CKR_PIN_INCORRECT:160'), { code: 0xa0 }), []],
    ['undefined', undefined, []],
    ['a string', 'CKR_PIN_INCORRECT', []],
  ];

  it.each(rows)('%s satisfies %j', (_, error, expected) => {
    const satisfied = (Object.keys(RULES) as Rule[]).filter((rule) => RULES[rule](error));
    expect(satisfied.sort()).toEqual([...expected].sort());
  });

  it('a typed pkcs11js error satisfies the rules its code names', () => {
    const typed = toPkcs11Error(Object.assign(new Error('CKR_PIN_INCORRECT:160'), { code: 0xa0 }), 'C_Login', 'm1');
    expect(isPinError(typed)).toBe(true);
  });

  it('checks errors by brand and code, not instanceof (two copies of the package)', () => {
    const foreign = Object.assign(Object.create(null) as object, {
      [Symbol.for('pkcs11-ha.error')]: true,
      code: 'ERR_PKCS11',
      ckr: 'CKR_KEY_HANDLE_INVALID',
      fault: 'ambiguous',
    });
    expect(isStaleHandle(foreign)).toBe(true);
    expect(isAmbiguousAnswer(foreign)).toBe(true);
  });

  it('are the same functions through classification.ts, where failover reads them', () => {
    for (const [name, rule] of Object.entries(RULES)) expect((fromTable as Record<string, unknown>)[name], name).toBe(rule);
  });
});

describe('the rules agree with the classification table', () => {
  it('every CKR_PIN_* row is a caller fault and a PIN error; no other row is', () => {
    const pins = [...RETURN_CODE_CLASSES.keys()].filter((ckr) => isPinError(answer(ckr)));
    expect(pins.sort()).toEqual(['CKR_PIN_EXPIRED', 'CKR_PIN_INCORRECT', 'CKR_PIN_INVALID', 'CKR_PIN_LEN_RANGE', 'CKR_PIN_LOCKED', 'CKR_PIN_TOO_WEAK']);
    for (const ckr of pins) expect(RETURN_CODE_CLASSES.get(ckr)?.fault, ckr).toBe('caller');
  });

  it('a member answer takes its member out exactly when its row says member', () => {
    for (const [ckr, { fault }] of RETURN_CODE_CLASSES) expect(takesMemberOut(answer(ckr)), ckr).toBe(fault === 'member');
  });

  it('a member answer is probed exactly when its row says ambiguous', () => {
    for (const [ckr, { fault }] of RETURN_CODE_CLASSES) expect(isAmbiguousAnswer(answer(ckr)), ckr).toBe(fault === 'ambiguous');
  });

  it('stale handles are ambiguous rows: a second refusal is probed, never failed on its own', () => {
    for (const ckr of ['CKR_OBJECT_HANDLE_INVALID', 'CKR_KEY_HANDLE_INVALID']) expect(RETURN_CODE_CLASSES.get(ckr)?.fault).toBe('ambiguous');
  });
});

describe('classifyAnswer: the user-not-logged-in rule', () => {
  const NOT_LOGGED_IN = ckrValue('CKR_USER_NOT_LOGGED_IN')!;

  it.each([
    ['CKR_USER_NOT_LOGGED_IN', false, 'caller'],
    ['CKR_USER_NOT_LOGGED_IN', true, 'ambiguous'],
    ['CKR_DEVICE_REMOVED', false, 'member'],
    ['CKR_GENERAL_ERROR', false, 'ambiguous'],
    ['CKR_PIN_INCORRECT', true, 'caller'],
  ] as const)('%s from a member logged in: %s is %s', (ckr, loggedIn, fault) => {
    expect(classifyAnswer(ckrValue(ckr)!, { loggedIn })).toMatchObject({ ckr, fault });
  });

  it('says why when it overrides the table', () => {
    const { reason } = classifyAnswer(NOT_LOGGED_IN, { loggedIn: false });
    expect(reason).toMatch(/before C_Login/);
    expect(reason).not.toBe(RETURN_CODE_CLASSES.get('CKR_USER_NOT_LOGGED_IN')!.reason);
    expect(classifyAnswer(NOT_LOGGED_IN, { loggedIn: true }).reason).toBe(RETURN_CODE_CLASSES.get('CKR_USER_NOT_LOGGED_IN')!.reason);
  });

  it('refuses CKR_OK like classifyReturnValue', () => {
    expect(() => classifyAnswer(0, { loggedIn: true })).toThrow(TypeError);
  });
});
