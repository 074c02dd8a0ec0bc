/**
 * The CLI's exit codes and the one line it prints for a failure. A script branches on the
 * code: 0 healthy, 1 degraded (a member failed, was refused, or owes something; or the
 * asked change could not be made on a member), 2 bad usage or bad configuration.
 */
import { HaError } from '../errors/ha-error.js';

/** What a `pkcs11-ha` run ended with. */
export const ExitCode = {
  /** The group is healthy / the command did what was asked. */
  ok: 0,
  /** The group is degraded: a member failed, was refused, or owes something. */
  degraded: 1,
  /** Bad usage or bad configuration: nothing was asked of the group, or it could not open as configured. */
  usage: 2,
} as const;

/** One of {@link ExitCode}'s values. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** A command line mistake the CLI found itself (exit 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * Codes that mean the command line, the config or the request was wrong: running it
 * again unchanged cannot succeed.
 */
const USAGE_CODES = new Set<string>(['ERR_CONFIG', 'ERR_INVALID_ARGUMENT']);
/** `ERR_ADMIN` reasons that are a caller's mistake (the rest is the endpoint or the way to it). */
const USAGE_REASONS = new Set<string>(['bad-request', 'unknown-method', 'pin-refused', 'unreachable']);

/** The exit code for an error that ended a command. */
export function exitCodeOf(error: unknown): ExitCodeValue {
  if (error instanceof UsageError) return ExitCode.usage;
  if (HaError.is(error)) {
    if (USAGE_CODES.has(error.code)) return ExitCode.usage;
    const reason = (error as { reason?: unknown }).reason;
    if (error.code === 'ERR_ADMIN' && typeof reason === 'string' && USAGE_REASONS.has(reason)) return ExitCode.usage;
  }
  return ExitCode.degraded;
}

/** The one line that says why (never a stack trace; messages never carry a PIN). */
export function reasonLine(command: string, error: unknown): string {
  const text = HaError.is(error) ? `${error.code}: ${error.message}` : error instanceof Error ? error.message : String(error);
  return `pkcs11-ha ${command}: ${text.replace(/\s*\n\s*/g, ' ')}\n`;
}
