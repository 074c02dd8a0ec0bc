/**
 * A worker thread that runs commands for one module with SYNCHRONOUS pkcs11js calls,
 * a batch at a time. Why: pkcs11js's async forms run every *Init on the calling thread
 * and cost ~40 µs each; sync calls in a worker keep the event loop free and let two
 * workers sign in parallel (see docs/architecture.md, "Execution model").
 *
 * The main thread has loaded and initialized the module already; this thread dlopens
 * the same file (one shared instance) and never calls C_Initialize or C_Finalize.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { pkcs11js } from '../native/pkcs11js.js';
import { runCommand, toWireError } from '../pkcs11/run-command.js';
import type { Command } from '../pkcs11/commands.js';
import { compactForPost, reviveBuffers } from './wire.js';
import type { BatchReply, BatchRequest, CommandOutcome } from './worker-protocol.js';
import { decodeRequest, ReplyWriter } from './frame-codec.js';

/** `replyPort`: where answers go (a channel of their own, which the pool can poll). */
const { modulePath, replyPort } = workerData as { modulePath: string; replyPort: MessagePort };
const pkcs11 = new pkcs11js.PKCS11();
pkcs11.load(modulePath);

function runOne(command: Command): CommandOutcome {
  try {
    // Structured clone delivers Uint8Arrays; pkcs11js wants Buffers for attribute values.
    return { ok: true, value: compactForPost(runCommand(pkcs11, reviveBuffers(command) as Command)) };
  } catch (error) {
    return { ok: false, error: toWireError(error) };
  }
}

/** The frame path: decode views, run each command with its output written into the reply frame. */
function runFrame(frame: ArrayBuffer): { frame: ArrayBuffer; length: number } {
  const commands = decodeRequest(frame);
  const reply = new ReplyWriter(commands);
  for (const command of commands) {
    try {
      const result = runCommand(pkcs11, command as Command, reply.outputSpace(command)) as Buffer | boolean;
      if (typeof result === 'boolean') reply.bool(result);
      else reply.bytesWritten(result);
    } catch (error) {
      reply.error(toWireError(error));
    }
  }
  return reply.finish();
}

parentPort?.on('message', (request: BatchRequest) => {
  if (request.frame !== undefined) {
    const { frame, length } = runFrame(request.frame);
    const reply: BatchReply = { id: request.id, frame, length };
    replyPort.postMessage(reply, [frame]);
    return;
  }
  const reply: BatchReply = { id: request.id, outcomes: request.commands.map(runOne) };
  replyPort.postMessage(reply);
});
