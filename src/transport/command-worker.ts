/**
 * A worker thread that runs commands for one module with SYNCHRONOUS pkcs11js calls,
 * a batch at a time. Why: pkcs11js's async forms run every *Init on the calling thread
 * and cost ~40 µs each; sync calls in a worker keep the event loop free and let two
 * workers sign in parallel (see docs/architecture.md, "Execution model").
 *
 * The main thread has loaded and initialized the module already; this thread dlopens
 * the same file (one shared instance) and never calls C_Initialize or C_Finalize.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pkcs11js } from '../pkcs11/pkcs11js.js';
import { runCommand, toWireError } from '../pkcs11/run-command.js';
import type { Command } from '../pkcs11/commands.js';
import { compactForPost, reviveBuffers } from './wire.js';
import type { BatchReply, BatchRequest, CommandOutcome } from './worker-protocol.js';

const { modulePath } = workerData as { modulePath: string };
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

parentPort?.on('message', (request: BatchRequest) => {
  const reply: BatchReply = { id: request.id, outcomes: request.commands.map(runOne) };
  parentPort?.postMessage(reply);
});
