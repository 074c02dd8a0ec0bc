/**
 * Commands: one PKCS#11 unit of work as plain data. A transport carries them to where
 * the module lives (a worker thread now, a member host process later) and
 * `runCommand` executes them there with synchronous pkcs11js calls.
 *
 * Everything here must survive structured clone and, later, a socket frame: Buffers,
 * numbers, strings, booleans and plain objects only. Handles are 8-byte buffers.
 */
import type { Mechanism } from 'pkcs11js';

/** A PKCS#11 handle (session, object or slot) as pkcs11js gives it: 8 bytes. */
export type Handle = Buffer;

/** An attribute as sent to a module. */
export interface WireAttribute {
  readonly type: number;
  readonly value?: number | boolean | string | Buffer;
}

/** An attribute as read back; `value` is undefined when the object has no such attribute or hides it. */
export interface ReadAttribute {
  readonly type: number;
  readonly value: Buffer | undefined;
}

/** The commands every transport understands, keyed by name: arguments and result. */
export interface CommandMap {
  openSession: { args: { slot: Handle }; result: Handle };
  closeSession: { args: { session: Handle }; result: void };
  login: { args: { session: Handle; userType: number; pin: string }; result: void };
  logout: { args: { session: Handle }; result: void };
  encrypt: { args: { session: Handle; mechanism: Mechanism; key: Handle; data: Buffer }; result: Buffer };
  decrypt: { args: { session: Handle; mechanism: Mechanism; key: Handle; data: Buffer }; result: Buffer };
  sign: { args: { session: Handle; mechanism: Mechanism; key: Handle; data: Buffer }; result: Buffer };
  verify: { args: { session: Handle; mechanism: Mechanism; key: Handle; data: Buffer; signature: Buffer }; result: boolean };
  digest: { args: { session: Handle; mechanism: Mechanism; data: Buffer }; result: Buffer };
  generateRandom: { args: { session: Handle; length: number }; result: Buffer };
  findObjects: { args: { session: Handle; template: readonly WireAttribute[] }; result: Handle[] };
  getAttributes: { args: { session: Handle; object: Handle; types: readonly number[] }; result: ReadAttribute[] };
  setAttributes: { args: { session: Handle; object: Handle; template: readonly WireAttribute[] }; result: void };
  createObject: { args: { session: Handle; template: readonly WireAttribute[] }; result: Handle };
  copyObject: { args: { session: Handle; object: Handle; template: readonly WireAttribute[] }; result: Handle };
  destroyObject: { args: { session: Handle; object: Handle }; result: void };
  generateKey: { args: { session: Handle; mechanism: Mechanism; template: readonly WireAttribute[] }; result: Handle };
  generateKeyPair: {
    args: { session: Handle; mechanism: Mechanism; publicTemplate: readonly WireAttribute[]; privateTemplate: readonly WireAttribute[] };
    result: { publicKey: Handle; privateKey: Handle };
  };
  wrapKey: { args: { session: Handle; mechanism: Mechanism; wrappingKey: Handle; key: Handle }; result: Buffer };
  unwrapKey: {
    args: { session: Handle; mechanism: Mechanism; unwrappingKey: Handle; wrapped: Buffer; template: readonly WireAttribute[] };
    result: Handle;
  };
  deriveKey: { args: { session: Handle; mechanism: Mechanism; baseKey: Handle; template: readonly WireAttribute[] }; result: Handle };
  /** SHA-256 (or another digest mechanism) over a key's value, computed inside the token. */
  digestKey: { args: { session: Handle; mechanism: Mechanism; key: Handle }; result: Buffer };
}

/** Name of a command. */
export type CommandName = keyof CommandMap;

/** A command ready to be sent: its name and its arguments. */
export type Command<N extends CommandName = CommandName> = N extends CommandName ? { readonly op: N } & CommandMap[N]['args'] : never;

/** What a command resolves to. */
export type CommandResult<N extends CommandName> = CommandMap[N]['result'];

/**
 * The shape of a failure as it crosses a thread or process boundary: enough to rebuild
 * a typed error on the other side, nothing more (never arguments: they may hold secrets).
 */
export interface WireError {
  /** PKCS#11 return value when the module answered with one. */
  readonly rv?: number;
  /** The PKCS#11 function that failed, e.g. `C_Sign`. */
  readonly fn?: string;
  /** A message for anything that is not a PKCS#11 return value (a bug, a native error). */
  readonly message: string;
}
