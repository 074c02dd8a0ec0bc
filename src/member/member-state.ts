/**
 * A member's health and role as ONE discriminated union: illegal combinations (a failed
 * member with no failure time, an active member with retry counters, a promoted member
 * that is failed or active) cannot be written down. Only the member changes its state.
 */

/** Configured role: active members take load, standby members only keep current. */
export type MemberRole = 'active' | 'standby';

/** Where a member stands now. */
export type MemberState =
  | { readonly kind: 'active' }
  /**
   * Serving in the standby role; `promoted` while it serves as an active one because no
   * active member is left (Luna's standby promotion).
   */
  | { readonly kind: 'standby'; readonly promoted: boolean }
  /**
   * Out of service. `since` (here and in `recovering`) is the group clock's `now()` when it
   * entered the state: a monotonic count of ms, not a date (status gives the date as `changedAt`).
   */
  | { readonly kind: 'failed'; readonly role: MemberRole; readonly since: number; readonly attempts: number; readonly reason: string }
  /** Reconnecting and resynchronising; `attempt` counts from 1. Takes no traffic yet. */
  | { readonly kind: 'recovering'; readonly role: MemberRole; readonly since: number; readonly attempt: number }
  | { readonly kind: 'removed'; readonly role: MemberRole };

/** The kind of a state, for status snapshots and events. */
export type MemberStateKind = MemberState['kind'];

/** A state in which the member takes commands. */
export type ServingState = Extract<MemberState, { readonly kind: 'active' | 'standby' }>;

/** True when the member can take commands now. */
export function isServing(state: MemberState): state is ServingState {
  return state.kind === 'active' || state.kind === 'standby';
}

/** The configured role a state carries. */
export function roleOf(state: MemberState): MemberRole {
  return state.kind === 'active' || state.kind === 'standby' ? state.kind : state.role;
}

/** True for a standby member serving as an active one. */
export function isPromoted(state: MemberState): boolean {
  return state.kind === 'standby' && state.promoted;
}

/** The serving state of a role (a standby member comes back unpromoted). */
export function servingState(role: MemberRole): ServingState {
  return role === 'active' ? { kind: 'active' } : { kind: 'standby', promoted: false };
}
