/**
 * The redirection `pkcs11-ha/register` installs: `pkcs11js`, imported or required by the
 * application or any of its dependencies, resolves to the facade. The library's own
 * modules (its src/ and dist/ folders) keep the real pkcs11js: the facade itself is built
 * on it, and member hosts load their module through it.
 */
import { register } from 'node:module';
import Module from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Where the facade lives and which importers keep the real pkcs11js. */
export interface RedirectTargets {
  /** The facade's ES module entry (URL). */
  readonly esm: string;
  /** The facade's CommonJS entry (a file path). */
  readonly cjs: string;
  /** The library's own folders (URLs ending in `/`): their imports are never redirected. */
  readonly own: readonly string[];
}

/** The resolve hook, run on Node's hooks thread; a data: URL, so that it needs no file of its own. */
const HOOK_SOURCE = `
let targets;
export function initialize(data) { targets = data; }
const own = (url) => typeof url === 'string' && targets.own.some((p) => url.startsWith(p) && !url.slice(p.length).includes('/node_modules/'));
export async function resolve(specifier, context, next) {
  if (specifier === 'pkcs11js' && !own(context.parentURL)) return { url: targets.esm, format: 'module', shortCircuit: true };
  return next(specifier, context);
}
`;

/** True when `file` (a path or URL) is one of the library's own modules. */
export function isOwnModule(file: string | undefined, own: readonly string[]): boolean {
  if (file === undefined) return false;
  const url = file.startsWith('file:') ? file : pathToFileURL(file).href;
  return own.some((p) => url.startsWith(p) && !url.slice(p.length).includes('/node_modules/'));
}

type ResolveFilename = (request: string, parent: { filename?: string | null } | undefined, isMain: boolean, options?: unknown) => string;

/** Installs the ESM resolve hook and the CommonJS resolution patch. Nothing else happens at load. */
export function installRedirect(targets: RedirectTargets): void {
  register(`data:text/javascript,${encodeURIComponent(HOOK_SOURCE)}`, { data: targets });
  const cjs = Module as unknown as { _resolveFilename: ResolveFilename };
  const original = cjs._resolveFilename;
  cjs._resolveFilename = function (request, parent, isMain, options) {
    if (request === 'pkcs11js' && !isOwnModule(parent?.filename ?? undefined, targets.own)) return targets.cjs;
    return original.call(this, request, parent, isMain, options);
  };
}

/** The facade's entries and the library's folders, from a URL inside the package. */
export function redirectTargets(packageRoot: URL, compiled: boolean): RedirectTargets {
  return {
    esm: new URL(compiled ? 'dist/pkcs11js.js' : 'src/pkcs11js.ts', packageRoot).href,
    cjs: fileURLToPath(new URL('cjs/pkcs11js.cjs', packageRoot)),
    own: [new URL('src/', packageRoot).href, new URL('dist/', packageRoot).href],
  };
}
