/**
 * The events of an HA group. Payloads are plain objects a person can print; none ever
 * carries a PIN, key bytes or application data.
 */
import type { MemberState, MemberStateKind } from '../member/member-state.js';

/** A member changed state (failed, recovered, closed, ...). */
export interface MemberStateChangedEvent {
  readonly member: string;
  readonly previous: MemberStateKind;
  readonly current: MemberState;
  /** Why, when a failure caused it. */
  readonly reason?: string;
}

/** The primary (first serving active member) changed. */
export interface PrimaryChangedEvent {
  readonly previous: string | undefined;
  readonly current: string | undefined;
}

/** Two objects share a name (class, type, label, id) but hold different key material. */
export interface IdentityConflictEvent {
  readonly name: string;
  /** The virtual handle already known under that name. */
  readonly existing: number;
  /** The new virtual handle given to the other object. */
  readonly incoming: number;
  /** The member holding the other object. */
  readonly member: string;
}

/** A member could not take a replica, deletion or attribute change; the journal records what it owes. */
export interface ReplicaMissedEvent {
  readonly member: string;
  /** The virtual handle of the object. */
  readonly object: number;
  readonly reason: string;
}

/** Event names and their listeners' signatures. */
export interface HaGroupEvents {
  replicaMissed: (event: ReplicaMissedEvent) => void;
  memberStateChanged: (event: MemberStateChangedEvent) => void;
  primaryChanged: (event: PrimaryChangedEvent) => void;
  identityConflict: (event: IdentityConflictEvent) => void;
}
