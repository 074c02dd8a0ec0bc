/**
 * The group's `node:diagnostics_channel` channels, for APM tools and OpenTelemetry: they
 * subscribe by name (`diagnostics_channel.subscribe(OPERATION_CHANNEL, fn)`) without
 * holding the group. A message is published only while a channel has subscribers, and
 * carries names, codes and times: never a PIN, key bytes, handles or application data.
 */
import diagnostics from 'node:diagnostics_channel';
import type { CommandName } from '../pkcs11/commands.js';

/** Each command a member ran (one attempt of an application call, or the group's own). */
export const OPERATION_CHANNEL = 'pkcs11-ha:operation';
/** Members taken out of service, commands run again, standby promotions, primary changes. */
export const FAILOVER_CHANNEL = 'pkcs11-ha:failover';
/** Recovery attempts of failed members, their outcome and resynchronisation progress. */
export const RECOVERY_CHANNEL = 'pkcs11-ha:recovery';

/**
 * How a command ended: `ok`; `error`, the member answered with an error (the caller's
 * fault, or an ambiguous answer); `fault`, the member failed under it (taken out of service).
 */
export type OperationOutcome = 'ok' | 'error' | 'fault';

/** A message of {@link OPERATION_CHANNEL}: one command on one member. */
export interface OperationMessage {
  readonly member: string;
  /** The command, e.g. `sign`, `encrypt`, `generateKeyPair`, `openSession`. */
  readonly command: CommandName;
  readonly outcome: OperationOutcome;
  /** How long it took, on the group's clock (ms); it started at `time - durationMs`. */
  readonly durationMs: number;
  /** When it ended: wall-clock ms since the Unix epoch. */
  readonly time: number;
  /** The error's stable code, when it failed. */
  readonly code?: string;
  /** The PKCS#11 return code's name (`CKR_...`), when the token gave one. */
  readonly returnCode?: string;
}

/** A message of {@link FAILOVER_CHANNEL}; `time` is wall-clock ms since the Unix epoch. */
export type FailoverMessage =
  | { readonly type: 'memberFailed'; readonly member: string; readonly reason: string; readonly time: number }
  /** A command failed on `member` and runs again: there after finding its objects (`refind`), or on another member (`elsewhere`). */
  | { readonly type: 'rerun'; readonly member: string; readonly step: 'refind' | 'elsewhere'; readonly code: string | undefined; readonly time: number }
  | { readonly type: 'standbyPromoted' | 'standbyDemoted'; readonly member: string; readonly time: number }
  | { readonly type: 'primaryChanged'; readonly previous: string | undefined; readonly current: string | undefined; readonly time: number };

/** A message of {@link RECOVERY_CHANNEL}; `time` is wall-clock ms since the Unix epoch. */
export type RecoveryMessage =
  | { readonly type: 'attempt'; readonly member: string; readonly attempt: number; readonly time: number }
  | { readonly type: 'recovered'; readonly member: string; readonly attempts: number; readonly time: number }
  | { readonly type: 'failed'; readonly member: string; readonly attempt: number; readonly reason: string; readonly time: number }
  | { readonly type: 'resyncProgress'; readonly member: string; readonly done: number; readonly total: number; readonly time: number };

/** The channels, made once per process (diagnostics_channel keeps one per name anyway). */
export const operationChannel = diagnostics.channel(OPERATION_CHANNEL);
export const failoverChannel = diagnostics.channel(FAILOVER_CHANNEL);
export const recoveryChannel = diagnostics.channel(RECOVERY_CHANNEL);

/** Publishes on a channel that has subscribers; `message` is built only then. */
export function publish<T>(channel: diagnostics.Channel, message: () => T): void {
  if (channel.hasSubscribers) channel.publish(message());
}
