/**
 * The plain snapshot a member gives of itself, for status output.
 */
import type { MemberRole, MemberState } from './member-state.js';
import type { SessionPoolStats } from './session-pool.js';

/** A plain snapshot of a member, for status output. */
export interface MemberSnapshot {
  readonly name: string;
  readonly index: number;
  readonly role: MemberRole;
  /** A standby member serving as an active one because no active member is left. */
  readonly promoted: boolean;
  readonly state: MemberState;
  readonly transport: string;
  readonly token: { readonly label: string; readonly serial: string } | undefined;
  /** Commands queued or running now. */
  readonly outstanding: number;
  /** Operations this member answered (with a result or the caller's error) since the group opened. */
  readonly served: number;
  /** Login attempts refused by this member with a PIN error. */
  readonly loginFailures: number;
  /** Times this member was taken out of service since the group opened. */
  readonly failures: number;
  readonly sessions: SessionPoolStats;
}
