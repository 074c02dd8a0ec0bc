/**
 * The logger the group writes its own lines to: any pino-compatible logger (pino, or
 * anything with `debug`, `info`, `warn` and `error` taking a fields object and a message).
 * Lines carry member names, states, reasons and counts; never a PIN, key bytes or
 * application data.
 */
import { ConfigError } from '../errors/ha-error.js';

/** One level of a {@link Logger}: a fields object and a message, as pino takes them. */
export type LogFn = (fields: Readonly<Record<string, unknown>>, message: string) => void;

/**
 * A pino-compatible logger. The group logs member failures, recoveries, promotions, debts
 * and its opening and closing (info and warn), and each state change and rerun (debug).
 *
 * @example
 * import pino from 'pino';
 * const group = await HaGroup.open({ members, logger: pino({ name: 'pkcs11-ha' }) });
 */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/**
 * Checks a `logger` option.
 * @throws {@link ConfigError} when a level is not a function
 */
export function checkLogger(logger: unknown): Logger | undefined {
  if (logger === undefined) return undefined;
  const missing = LEVELS.filter((level) => typeof (logger as Record<string, unknown> | null)?.[level] !== 'function');
  if (missing.length > 0) throw new ConfigError('logger', `must have debug, info, warn and error methods (a pino-compatible logger), missing ${missing.join(', ')}`);
  return logger as Logger;
}
