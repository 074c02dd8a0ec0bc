/**
 * Loads each PKCS#11 module once per process and counts who uses it.
 *
 * A library file loaded twice (same inode, whatever the path) is ONE instance:
 * a second C_Initialize fails and a C_Finalize on either breaks the other. So members
 * that are tokens of one module share one loaded instance, keyed by device and inode,
 * and the last member to let go finalizes it.
 */
import { realpathSync, statSync } from 'node:fs';
import type { PKCS11 } from 'pkcs11js';
import { ConfigError } from '../errors/ha-error.js';
import { pkcs11js } from '../native/pkcs11js.js';

/** A loaded, initialized module shared by the members that use it. */
export interface LoadedModule {
  /** The path the module was first loaded from (workers dlopen the same path). */
  readonly path: string;
  /** The main thread's pkcs11js instance: keeps the library mapped while workers use it. */
  readonly pkcs11: PKCS11;
  /** Environment given at C_Initialize (e.g. SOFTHSM2_CONF), fixed for the instance's life. */
  readonly env: Readonly<Record<string, string>>;
}

interface Entry extends LoadedModule {
  refs: number;
  /** False when someone else in the process initialized it first: then we never finalize. */
  ownsInitialize: boolean;
}

const loaded = new Map<string, Entry>();

function identityOf(path: string): { key: string; real: string } {
  const real = realpathSync(path);
  const st = statSync(real);
  return { key: `${st.dev}:${st.ino}`, real };
}

function sameEnv(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

/**
 * Loads and initializes a module (with CKF_OS_LOCKING_OK: without it SoftHSM turns its
 * locks off and concurrent use crashes), or takes one more reference to it.
 *
 * @param path the module file
 * @param env variables the module reads at C_Initialize (set on the main thread just
 *   before it, then restored)
 * @param where the config path to name in errors
 * @throws {@link ConfigError} when the file is missing or already loaded with another env
 */
export function acquireModule(path: string, env: Readonly<Record<string, string>>, where: string): LoadedModule {
  let id: { key: string; real: string };
  try {
    id = identityOf(path);
  } catch {
    throw new ConfigError(where, `module file not found: ${JSON.stringify(path)}`);
  }
  const existing = loaded.get(id.key);
  if (existing) {
    if (!sameEnv(existing.env, env)) {
      // The module read its environment once, at C_Initialize: a second configuration
      // would silently be ignored. A byte copy of the file is an independent instance.
      throw new ConfigError(
        where,
        `module ${JSON.stringify(path)} is already loaded with another environment (${Object.keys(existing.env).join(', ') || 'none'}); ` +
          'use a copy of the module file for an independent instance',
      );
    }
    existing.refs++;
    return existing;
  }
  const pkcs11 = new pkcs11js.PKCS11();
  try {
    pkcs11.load(id.real);
  } catch (error) {
    throw new ConfigError(where, `cannot load module ${JSON.stringify(path)}: ${(error as Error).message}`);
  }
  const saved = new Map<string, string | undefined>();
  for (const [k, v] of Object.entries(env)) {
    saved.set(k, process.env[k]);
    process.env[k] = v;
  }
  let ownsInitialize = true;
  try {
    pkcs11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (error) {
    if ((error as { code?: number }).code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      pkcs11.close();
      throw error;
    }
    ownsInitialize = false;
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  const entry: Entry = { path: id.real, pkcs11, env: { ...env }, refs: 1, ownsInitialize };
  loaded.set(id.key, entry);
  return entry;
}

/** Drops one reference; the last one finalizes and unloads the module. Idempotent per reference holder. */
export function releaseModule(module: LoadedModule): void {
  for (const [key, entry] of loaded) {
    if (entry !== module) continue;
    if (--entry.refs > 0) return;
    loaded.delete(key);
    try {
      if (entry.ownsInitialize) entry.pkcs11.C_Finalize();
    } finally {
      entry.pkcs11.close();
    }
    return;
  }
}

/** How many modules are loaded now (for tests and status). */
export function loadedModuleCount(): number {
  return loaded.size;
}
