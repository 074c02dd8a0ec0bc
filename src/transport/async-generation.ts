/**
 * Short key generations (src/pkcs11/short-commands.ts) through pkcs11js's own async calls,
 * which run on libuv's thread pool: nothing to copy across a thread (the templates are
 * converted on this thread, in C++), and this thread goes on with the callers' other work
 * while the keys are made. Structured clone to a command worker cost more than an EC key
 * pair's generation itself.
 */
import type { PKCS11, Template } from 'pkcs11js';
import type { Command, CommandResult } from '../pkcs11/commands.js';
import { toWireError } from '../pkcs11/run-command.js';
import { CommandFailedError } from './transport.js';

/** Commands {@link generateAsync} makes. */
export type AsyncGeneration = Extract<Command, { op: 'generateKey' | 'generateKeyPair' }>;

/** Whether `command` is a generation {@link generateAsync} can make. */
export function isAsyncGeneration(command: Command): command is AsyncGeneration {
  return command.op === 'generateKeyPair' || command.op === 'generateKey';
}

/** Makes a generation on libuv's thread pool; rejects with {@link CommandFailedError}. */
export async function generateAsync(p: PKCS11, command: AsyncGeneration): Promise<CommandResult<AsyncGeneration['op']>> {
  try {
    if (command.op === 'generateKey') return await p.C_GenerateKeyAsync(command.session, command.mechanism, command.template as Template);
    const pair = await p.C_GenerateKeyPairAsync(command.session, command.mechanism, command.publicTemplate as Template, command.privateTemplate as Template);
    return { publicKey: pair.publicKey, privateKey: pair.privateKey };
  } catch (error) {
    throw new CommandFailedError(toWireError(error));
  }
}
