/**
 * Removes member hosts' private socket directories when the process exits without
 * closing its groups (`process.exit()`, the event loop running dry, an uncaught
 * exception): a synchronous 'exit' listener, since nothing asynchronous runs then. A
 * process killed by a signal it does not handle runs no listener at all: an application
 * that ends on SIGTERM should close its groups (or call `process.exit()`) in its handler.
 */
import { rmSync } from 'node:fs';

const dirs = new Set<string>();
let listening = false;

/** Removes every directory still registered (the 'exit' listener; exported for its test). */
export function removeLeftDirectories(): void {
  for (const dir of dirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Nothing to do about it while the process exits.
    }
  }
  dirs.clear();
}

/**
 * Has `dir` removed if the process exits while it is still there.
 * @returns a function to call once the directory has been removed the normal way
 */
export function removeOnExit(dir: string): () => void {
  if (!listening) {
    listening = true;
    process.on('exit', removeLeftDirectories);
  }
  dirs.add(dir);
  return () => dirs.delete(dir);
}
