/**
 * Recognises the register hook (`--import pkcs11-ha/register`) among Node's flags, so that
 * the processes and threads the group starts can be given flags and an environment
 * without it.
 */

/** True for a module specifier or path that names the register hook of this package. */
export function isRegisterHook(specifier: string): boolean {
  return specifier === 'pkcs11-ha/register' || /[\\/](?:pkcs11-ha[\\/](?:dist[\\/])?|src[\\/])register\.(?:[cm]?js|ts)$/.test(specifier) || /pkcs11-ha[\\/]register$/.test(specifier);
}

/** Node flags (`execArgv`) without `--import`/`--require` of the register hook. */
export function stripHookArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = /^(--import|--require|-r|--loader|--experimental-loader)=(.*)$/.exec(arg);
    if (eq && isRegisterHook(eq[2]!)) continue;
    if (/^(--import|--require|-r|--loader|--experimental-loader)$/.test(arg) && i + 1 < args.length && isRegisterHook(args[i + 1]!)) {
      i++;
      continue;
    }
    out.push(arg);
  }
  return out;
}

/** A NODE_OPTIONS string without the register hook (other options kept as written). */
export function stripRegisterHook(nodeOptions: string): string {
  const words = nodeOptions.match(/(?:[^\s"']+|"[^"]*"|'[^']*')+/g) ?? [];
  const unquote = (w: string): string => w.replace(/^["']|["']$/g, '');
  const kept: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    const eq = /^(--import|--require|-r|--loader|--experimental-loader)=(.*)$/.exec(w);
    if (eq && isRegisterHook(unquote(eq[2]!))) continue;
    if (/^(--import|--require|-r|--loader|--experimental-loader)$/.test(w) && i + 1 < words.length && isRegisterHook(unquote(words[i + 1]!))) {
      i++;
      continue;
    }
    kept.push(w);
  }
  return kept.join(' ');
}
