/**
 * The admin endpoint's wire protocol: newline-delimited JSON over a Unix socket. A client
 * sends requests `{ id, method, params }`, one per line; the endpoint answers each with
 * `{ id, result }` or `{ id, error: { code, reason?, message } }`, and a `settle` request
 * also gets `{ id, progress }` lines before its answer. Requests on one connection may be
 * answered out of order: the `id` pairs them.
 */
import { HaError, type HaErrorCode } from '../errors/ha-error.js';
import type { ResyncProgressEvent } from '../events/group-events.js';

/** What the admin endpoint can be asked, with the parameters and the result of each. */
export interface AdminMethods {
  /** The group's `status()` (buffers as hex). */
  status: { params: Record<string, never>; result: unknown };
  /** `group.recover(member)`: true when the member serves again. */
  recover: { params: { member: string }; result: boolean };
  /** `group.setStandby(member, standby)`. */
  standby: { params: { member: string; standby: boolean }; result: null };
  /** `group.addMember(config)`, a config without PINs: the new member's name. */
  addMember: { params: { config: Record<string, unknown> }; result: string };
  /** `group.removeMember(member)`. */
  removeMember: { params: { member: string }; result: null };
  /** Settles what serving members owe (the journal's debts), with progress lines meanwhile. */
  settle: { params: Record<string, never>; result: null };
}

/** A method of the admin endpoint. */
export type AdminMethod = keyof AdminMethods;

/** The methods, for checking a request. */
export const ADMIN_METHODS: readonly AdminMethod[] = ['status', 'recover', 'standby', 'addMember', 'removeMember', 'settle'];

/** One request line. */
export interface AdminRequest<M extends AdminMethod = AdminMethod> {
  readonly id: number;
  readonly method: M;
  readonly params: AdminMethods[M]['params'];
}

/** An error as it travels: the group's {@link HaError} code, or `ERR_ADMIN` with a reason. */
export interface AdminWireError {
  readonly code: string;
  readonly reason?: AdminErrorReason;
  readonly message: string;
}

/** One answer line. */
export type AdminAnswer =
  | { readonly id: number; readonly result: unknown }
  | { readonly id: number; readonly error: AdminWireError }
  | { readonly id: number; readonly progress: ResyncProgressEvent };

/**
 * Why the admin endpoint, or the way to it, failed (stable; a new one is a minor change):
 * - `bad-request`: a line that is not a request (not JSON, no id, bad params, too long);
 * - `unknown-method`: no such method;
 * - `pin-refused`: a PIN was sent; the endpoint accepts none;
 * - `not-a-socket`: the socket path holds something else, which is never replaced;
 * - `in-use`: another endpoint listens on the socket path;
 * - `unreachable`: no endpoint answers at the path (missing, refused, no permission);
 * - `connection-lost`: the connection closed before the answer came;
 * - `failed`: the group failed the request with an error that is not an {@link HaError}.
 */
export type AdminErrorReason = 'bad-request' | 'unknown-method' | 'pin-refused' | 'not-a-socket' | 'in-use' | 'unreachable' | 'connection-lost' | 'failed';

/**
 * Code `ERR_ADMIN`: an error of the admin endpoint itself; `reason` says which. `HaGroup.open`
 * with the `admin` option throws it when the socket path is taken (`in-use`, `not-a-socket`).
 */
export class AdminError extends HaError {
  constructor(
    readonly reason: AdminErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('ERR_ADMIN', message, options);
  }
}

/** Longest request or answer line accepted (a status of 64 members is far below it). */
export const MAX_LINE_BYTES = 4 * 1024 * 1024;

/** The line for an error: an {@link HaError} keeps its code; anything else is `failed`. */
export function wireError(error: unknown): AdminWireError {
  if (error instanceof AdminError) return { code: error.code, reason: error.reason, message: error.message };
  if (HaError.is(error)) return { code: error.code, message: error.message };
  return { code: 'ERR_ADMIN', reason: 'failed', message: error instanceof Error ? error.message : String(error) };
}

const HA_CODES = new Set<string>([
  'ERR_CONFIG',
  'ERR_INVALID_ARGUMENT',
  'ERR_PKCS11',
  'ERR_INVALID_HANDLE',
  'ERR_NO_MEMBER',
  'ERR_MEMBER_UNREACHABLE',
  'ERR_DEADLINE',
  'ERR_CLOSED',
  'ERR_TESTBED',
  'ERR_DOMAIN',
  'ERR_REPLICATION',
  'ERR_COMMAND',
  'ERR_JOURNAL',
  'ERR_OPERATION_RESTART',
] satisfies HaErrorCode[]);

/** The error a client throws for an error line: an {@link HaError} with the group's code. */
export function errorFromWire(wire: AdminWireError): HaError {
  if (wire.code !== 'ERR_ADMIN' && HA_CODES.has(wire.code)) return new HaError(wire.code as HaErrorCode, wire.message);
  return new AdminError(wire.reason ?? 'failed', wire.message);
}

/** JSON for one line: buffers as hex, so a status prints as a person reads it. */
export function encodeLine(value: unknown): string {
  return `${JSON.stringify(value, (_key, v: unknown) => (isBufferJson(v) ? Buffer.from(v.data).toString('hex') : v))}\n`;
}

/** `JSON.stringify` calls a Buffer's `toJSON` before the replacer sees it. */
function isBufferJson(v: unknown): v is { type: 'Buffer'; data: number[] } {
  return typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data);
}

/**
 * Splits a byte stream into lines and hands each to `onLine`; a line longer than
 * {@link MAX_LINE_BYTES} calls `onTooLong` once and ends the splitting.
 */
export function lineSplitter(onLine: (line: string) => void, onTooLong: () => void): (chunk: Buffer) => void {
  let pending: Buffer[] = [];
  let size = 0;
  let over = false;
  return (chunk) => {
    if (over) return;
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      pending.push(chunk.subarray(start, nl));
      const line = Buffer.concat(pending).toString('utf8');
      pending = [];
      size = 0;
      start = nl + 1;
      if (line.trim() !== '') onLine(line);
    }
    if (start < chunk.length) {
      pending.push(chunk.subarray(start));
      size += chunk.length - start;
      if (size > MAX_LINE_BYTES) {
        over = true;
        pending = [];
        onTooLong();
      }
    }
  };
}
