/**
 * A member's health as a discriminated union: illegal combinations (a failed member
 * with no failure time, an active member with retry counters) cannot be written down.
 */

/** Configured role: active members take load, standby members only keep current. */
export type MemberRole = 'active' | 'standby';

/** Where a member stands now. */
export type MemberState =
  | { readonly kind: 'active' }
  | { readonly kind: 'standby' }
  | { readonly kind: 'failed'; readonly since: number; readonly attempts: number; readonly reason: string }
  /** Reconnecting and resynchronising; `attempt` counts from 1. Takes no traffic yet. */
  | { readonly kind: 'recovering'; readonly since: number; readonly attempt: number }
  | { readonly kind: 'removed' };

/** The kind of a state, for status snapshots and events. */
export type MemberStateKind = MemberState['kind'];

/** True when the member can take commands now. */
export function isServing(state: MemberState): state is { readonly kind: 'active' } | { readonly kind: 'standby' } {
  return state.kind === 'active' || state.kind === 'standby';
}
