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
      return new Pkcs11Error(ckr, rv, fn || `command ${op}`, member.name, fault);
    }
    // pkcs11js rejects malformed arguments (wrong types) before calling the module.
    if (message.startsWith('TypeError')) return new InvalidArgumentError(`${op}: ${message.replace(/^TypeError: /, '')}`);
    // The module answered, so the member is alive: whatever this is, it is not a member fault.
    return new CommandError(member.name, `${op}: ${message}`);
  }
  if (HaError.is(raw)) return raw;
  return new MemberUnreachableError(member.name, raw instanceof Error ? raw.message : String(raw), { cause: raw });
}
