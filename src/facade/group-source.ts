/**
 * Where a facade `PKCS11` object's group comes from: `load(path)` of a group config file
 * (the JSON the CLI reads), a config object, or, when the environment variable
 * `PKCS11_HA_CONFIG` names a config file, `load()` of any module path (so that code with
 * a hard-coded module path runs on the group). Anything else is a real PKCS#11 module,
 * loaded with pkcs11js as it would be without the facade.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfigFile } from '../cli/config-file.js';
import { resolveGroupConfig, type GroupFileConfig } from '../group/group-config.js';
import { DEFAULT_LABEL } from './slot-info.js';

/** The environment variable naming the group config file that every `load()` uses. */
export const CONFIG_ENV = 'PKCS11_HA_CONFIG';
/** The environment variable giving the virtual token's label: it overrides the config's `label`. */
export const LABEL_ENV = 'PKCS11_HA_LABEL';

/** A group to open: its config, the key it is shared under in this process, the token label. */
export interface GroupSource {
  readonly key: string;
  readonly config: GroupFileConfig;
  readonly label: string;
}

/** True when `path` holds a JSON object (a config file), not a shared library. */
function isConfigFile(path: string): boolean {
  if (!/\.json$/i.test(path)) {
    try {
      const head = readFileSync(path, { encoding: 'utf8', flag: 'r' }).slice(0, 64).trimStart();
      return head.startsWith('{');
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * The group `load(target)` means, or undefined for a real module path.
 *
 * @throws {@link HaError} `ERR_CONFIG` for a config file or object that is not valid
 */
export function groupSource(target: string | GroupFileConfig, env: NodeJS.ProcessEnv = process.env): GroupSource | undefined {
  const override = env[LABEL_ENV] !== undefined && env[LABEL_ENV] !== '' ? env[LABEL_ENV] : undefined;
  const label = (config: GroupFileConfig): string => override ?? config.label ?? DEFAULT_LABEL;
  if (typeof target === 'object' && target !== null) {
    resolveGroupConfig(target); // validated here, so that load() reports a mistake at once
    return { key: `object:${JSON.stringify(target)}`, config: target, label: label(target) };
  }
  const fromEnv = env[CONFIG_ENV];
  const file = fromEnv !== undefined && fromEnv !== '' ? fromEnv : isConfigFile(target) ? target : undefined;
  if (file === undefined) return undefined;
  const path = resolve(file);
  const config = loadConfigFile(path);
  return { key: `file:${path}`, config, label: label(config) };
}
