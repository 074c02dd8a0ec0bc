/**
 * The events of an HA group. Payloads are plain objects a person can print; none ever
 * carries a PIN, key bytes or application data.
 */
import type { MemberState, MemberStateKind } from '../member/member-state.js';

/** What every event carries. */
export interface GroupEvent {
  /**
   * When it happened: wall-clock milliseconds since the Unix epoch (`new Date(time)`), read
   * through the group's clock (see `Clock.wallNow`).
   */
  readonly time: number;
}

/** A member changed state (failed, recovered, closed, ...). */
export interface MemberStateChangedEvent extends GroupEvent {
  readonly member: string;
  readonly previous: MemberStateKind;
  readonly current: MemberState;
  /** Why, when a failure caused it. */
  readonly reason?: string;
}

/** The primary (first serving active member) changed. */
export interface PrimaryChangedEvent extends GroupEvent {
  readonly previous: string | undefined;
  readonly current: string | undefined;
}

/** Two objects share a name (class, type, label, id) but hold different key material. */
export interface IdentityConflictEvent extends GroupEvent {
  readonly name: string;
  /** The virtual handle already known under that name. */
  readonly existing: number;
  /** The new virtual handle given to the other object. */
  readonly incoming: number;
  /** The member holding the other object. */
  readonly member: string;
}

/** A member could not take a replica, deletion or attribute change; the journal records what it owes. */
export interface ReplicaMissedEvent extends GroupEvent {
  readonly member: string;
  /** The virtual handle of the object. */
  readonly object: number;
  readonly reason: string;
}

/** A member was taken out of service (connection lost, deadline passed, member fault). */
export interface MemberFailedEvent extends GroupEvent {
  readonly member: string;
  readonly reason: string;
}

/** A failed member was reconnected, resynchronised, and takes traffic again. */
export interface MemberRecoveredEvent extends GroupEvent {
  readonly member: string;
  /** Which attempt succeeded (1 = the first). */
  readonly attempts: number;
}

/** A recovery attempt failed; the loop tries again after its interval while attempts remain. */
export interface RecoveryFailedEvent extends GroupEvent {
  readonly member: string;
  readonly attempt: number;
  readonly reason: string;
}

/** A standby member serves as an active one (no active member was left), or stops doing so. */
export interface StandbyEvent extends GroupEvent {
  readonly member: string;
}

/** Progress of a member's resynchronisation: `done` of `total` debts settled. */
export interface ResyncProgressEvent extends GroupEvent {
  readonly member: string;
  readonly done: number;
  readonly total: number;
}

/**
 * A member could not be connected while the group opened (module file not found, no
 * token with that label, host did not start). It starts failed and the recovery loop
 * tries it again; to hear this, attach the listener before opening, through the `on`
 * option of `HaGroup.open`.
 */
export interface MemberConnectFailedEvent extends GroupEvent {
  readonly member: string;
  /** The error's stable code: `ERR_CONFIG` for a module that cannot be loaded, else mostly `ERR_MEMBER_UNREACHABLE`. */
  readonly code: string;
  readonly reason: string;
}

/** Event names and their listeners' signatures. */
export interface HaGroupEvents {
  /** A member owes a replica, deletion or attribute change (recorded in the journal). */
  replicationOwed: (event: ReplicaMissedEvent) => void;
  /** @deprecated the same as `replicationOwed`, kept for 0.1 listeners. */
  replicaMissed: (event: ReplicaMissedEvent) => void;
  memberFailed: (event: MemberFailedEvent) => void;
  /** A member could not be connected while the group opened (see {@link MemberConnectFailedEvent}). */
  memberConnectFailed: (event: MemberConnectFailedEvent) => void;
  memberRecovered: (event: MemberRecoveredEvent) => void;
  recoveryFailed: (event: RecoveryFailedEvent) => void;
  standbyPromoted: (event: StandbyEvent) => void;
  standbyDemoted: (event: StandbyEvent) => void;
  resyncProgress: (event: ResyncProgressEvent) => void;
  memberStateChanged: (event: MemberStateChangedEvent) => void;
  primaryChanged: (event: PrimaryChangedEvent) => void;
  identityConflict: (event: IdentityConflictEvent) => void;
}

/** An event's payload as a module announces it: the group adds the time. */
export type EventPayload<K extends keyof HaGroupEvents> = Omit<Parameters<HaGroupEvents[K]>[0], 'time'>;

/**
 * Where the group's modules announce events (the group stamps and emits them), handed
 * down at construction so that lower layers never call back up into it.
 */
export interface GroupEventSink {
  emit<K extends keyof HaGroupEvents>(event: K, payload: EventPayload<K>): unknown;
}
