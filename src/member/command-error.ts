/**
 * What a transport threw, as the typed error a member's caller sees: a PKCS#11 answer
 * classified (with the member's login state: "not logged in" before the group logged the
 * member in is the caller's), a malformed argument, a non-PKCS#11 failure of a module that
 * answered, or the member unreachable.
 */
import { classifyAnswer } from '../errors/classification.js';
import { CommandError, HaError, InvalidArgumentError, MemberUnreachableError, Pkcs11Error } from '../errors/ha-error.js';
import type { CommandName } from '../pkcs11/commands.js';
import { CommandFailedError } from '../transport/transport.js';

/** Types what a command of `member` threw. */
export function commandError(raw: unknown, op: CommandName, member: { readonly name: string; readonly loggedIn: boolean }): HaError {
  if (raw instanceof CommandFailedError) {
    const { rv, fn, message } = raw.wire;
    if (rv !== undefined) {
      const { ckr, fault } = classifyAnswer(rv, member);
      return new Pkcs11Error(ckr, rv, fn || lastFunction(op), member.name, fault);
    }
    // pkcs11js rejects malformed arguments (wrong types) before calling the module.
    if (message.startsWith('TypeError')) return new InvalidArgumentError(`${op}: ${message.replace(/^TypeError: /, '')}`);
    // The module answered, so the member is alive: whatever this is, it is not a member fault.
    return new CommandError(member.name, `${op}: ${message}`);
  }
  if (HaError.is(raw)) return raw;
  return new MemberUnreachableError(member.name, raw instanceof Error ? raw.message : String(raw), { cause: raw });
}

/** Commands whose last PKCS#11 function is not `C_` + the command's name. */
const LAST_FUNCTION: Partial<Record<CommandName, string>> = {
  getAttributes: 'C_GetAttributeValue',
  setAttributes: 'C_SetAttributeValue',
  digestKey: 'C_DigestFinal',
  digestUpdateKey: 'C_DigestKey',
  initPin: 'C_InitPIN',
  setPin: 'C_SetPIN',
  getMechanismList: 'C_GetMechanismList',
  getMechanismInfo: 'C_GetMechanismInfo',
  getTokenInfo: 'C_GetTokenInfo',
  contextLogin: 'C_Login',
  encryptOnce: 'C_Encrypt',
  decryptOnce: 'C_Decrypt',
  signOnce: 'C_Sign',
  verifyOnce: 'C_Verify',
};

/**
 * The PKCS#11 function a command ends with, for an answer that did not say which function
 * failed (a transport that lost it): a `Pkcs11Error`'s `fn` always names a C_ function.
 */
function lastFunction(op: CommandName): string {
  return LAST_FUNCTION[op] ?? `C_${op.charAt(0).toUpperCase()}${op.slice(1)}`;
}
