/**
 * Removes member hosts' private socket directories when the process exits without
 * closing its groups (`process.exit()`, the event loop running dry, an uncaught
 * exception): a synchronous 'exit' listener, since nothing asynchronous runs then. A
 * process killed by a signal it does not handle runs no listener at all: an application
 * that ends on SIGTERM should close its groups (or call `process.exit()`) in its handler.
 * For an application killed outright (SIGKILL), each member host removes its own socket
 * directory when it stops because its parent went away (member-host.ts, with
 * {@link hostSocketDirectory} and {@link removeOnExit} in the host's process).
 */
import { lstatSync, rmSync } from 'node:fs';
import { basename, dirname } from 'node:path';

/** How the private directory of a member host's socket is named (`mkdtemp` adds six characters). */
export const HOST_DIR_PREFIX = 'pkcs11-ha-host-';
/** The socket's name inside that directory. */
export const HOST_SOCKET_NAME = 'host.sock';

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

/**
 * The private directory a member host was given for `socketPath`, when it is one: a
 * `pkcs11-ha-host-*` directory (not a link) of this user holding `host.sock`. Undefined for
 * any other path, which a host must then never remove.
 */
export function hostSocketDirectory(socketPath: string | undefined): string | undefined {
  if (socketPath === undefined || basename(socketPath) !== HOST_SOCKET_NAME) return undefined;
  const dir = dirname(socketPath);
  if (!basename(dir).startsWith(HOST_DIR_PREFIX) || basename(dir).length <= HOST_DIR_PREFIX.length) return undefined;
  try {
    const stat = lstatSync(dir);
    if (!stat.isDirectory() || (process.getuid !== undefined && stat.uid !== process.getuid())) return undefined;
  } catch {
    return undefined;
  }
  return dir;
}
