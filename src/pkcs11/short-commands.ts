/**
 * Commands their caller knows to be short: key management on SESSION objects with a fast
 * mechanism (an EC or AES key generation, an attribute read, a wrap under AES, an unwrap
 * or creation of a session object, a destroy of one). In SoftHSM they take tens of
 * microseconds and touch no token file, less than a thread hand-off costs, so an
 * in-process transport may make them on the calling thread like the hot commands.
 *
 * Only the caller can tell: a command does not say whether its object is a token object
 * (a token write or unlink takes milliseconds), and an RSA key generation takes a
 * hundred. The mark is kept beside the command (a WeakSet), so commands stay plain data
 * and nothing extra crosses a thread or a process; a transport that ignores it loses nothing.
 */
import { pkcs11js } from '../native/pkcs11js.js';
import type { Command, WireAttribute } from './commands.js';

const marked = new WeakSet<object>();

/** Marks `command` as short (see the file comment) and returns it. */
export function markShort<C extends Command>(command: C): C {
  marked.add(command);
  return command;
}

/** Marks `command` short when `short` holds; returns it. */
export function shortIf<C extends Command>(short: boolean, command: C): C {
  if (short) marked.add(command);
  return command;
}

/** Whether `command` was marked short. */
export function isShort(command: Command): boolean {
  return marked.has(command);
}

/** Key generation mechanisms that are short (no prime search). */
const SHORT_GENERATION: ReadonlySet<number> = new Set(
  [pkcs11js.CKM_EC_KEY_PAIR_GEN, pkcs11js.CKM_AES_KEY_GEN, pkcs11js.CKM_GENERIC_SECRET_KEY_GEN, pkcs11js.CKM_DES3_KEY_GEN].filter((m): m is number => typeof m === 'number'),
);

/** Wrapping mechanisms that are short (symmetric). */
const SHORT_WRAP: ReadonlySet<number> = new Set([pkcs11js.CKM_AES_KEY_WRAP, pkcs11js.CKM_AES_KEY_WRAP_PAD].filter((m): m is number => typeof m === 'number'));

/**
 * Whether a command that makes SESSION objects is short: a generation with a short
 * mechanism, an unwrap under AES key wrap, or a C_CreateObject. (Derivations and copies
 * are left to the threads: their cost depends on the mechanism or the source.)
 */
export function isShortCreation(command: Command): boolean {
  switch (command.op) {
    case 'generateKey':
    case 'generateKeyPair':
      return SHORT_GENERATION.has(command.mechanism.mechanism);
    case 'unwrapKey':
      return SHORT_WRAP.has(command.mechanism.mechanism);
    case 'createObject':
      return true;
    default:
      return false;
  }
}

/** The command, marked short when it makes session objects with a fast mechanism ({@link isShortCreation}). */
export function shortCreation<C extends Command>(command: C): C {
  return isShortCreation(command) ? markShort(command) : command;
}

/** Whether a template makes a session object (CKA_TOKEN absent or false in any form). */
export function makesSessionObject(template: readonly WireAttribute[]): boolean {
  const v = template.find((a) => a.type === pkcs11js.CKA_TOKEN)?.value;
  if (v === undefined) return true;
  if (Buffer.isBuffer(v)) return v.every((b) => b === 0);
  return !v;
}
