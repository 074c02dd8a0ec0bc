/**
 * Reads a group configuration file (`--config <file>`). The one place the CLI turns a
 * file into a `GroupConfig`, checked by the same zod definition that gives the shipped JSON
 * schema (src/group/config-schema.ts); `{ env }` and `{ file }` PINs are read when it is checked.
 */
import { readFileSync } from 'node:fs';
import { HaError } from '../errors/ha-error.js';
import { CODE_ONLY_OPTIONS, parseFileConfig } from '../group/config-schema.js';
import { resolveGroupConfig, type CodeOptions, type GroupFileConfig } from '../group/group-config.js';

// Every option only code can give is refused in a file: the list names them all (a compile error otherwise).
type Assert<T extends true> = T;
type CodeOnlyKey = Exclude<keyof CodeOptions, 'scheduler'>;
type _AllCodeOnlyOptionsListed = [Assert<CodeOnlyKey extends (typeof CODE_ONLY_OPTIONS)[number] ? true : false>, Assert<(typeof CODE_ONLY_OPTIONS)[number] extends CodeOnlyKey ? true : false>];

/**
 * Reads, parses and validates a group configuration file.
 *
 * @throws {@link HaError} `ERR_CONFIG` when the file cannot be read, is not JSON, holds an option
 * only code can give (`<key>: code only, a file cannot hold it`), or is not a valid
 * configuration (the message names the file and the bad value's path, never a PIN)
 */
export function loadConfigFile(path: string): GroupFileConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new HaError('ERR_CONFIG', `cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (error) {
    // Node quotes a piece of the text in JSON errors, which may be a PIN: keep only where.
    const where = /position \d+(?: \(line \d+ column \d+\))?/.exec((error as Error).message)?.[0];
    throw new HaError('ERR_CONFIG', `${path} is not valid JSON${where ? ` (at ${where})` : ''}`);
  }
  try {
    // Validated once here, so a mistake is told before any member is touched. A file holds
    // no code-only option (clock, metrics, logger, on, ...): refused as such, not for its shape.
    parseFileConfig(config);
    resolveGroupConfig(config as GroupFileConfig);
  } catch (error) {
    throw HaError.is(error) ? new HaError(error.code, `${path}: ${error.message}`) : error;
  }
  return config as GroupFileConfig;
}
