/**
 * Primary election and standby promotion, as a pure function over member states: the
 * group applies what it returns. Luna's rules: the primary is the first serving active
 * member in member order; standby members take load only when no active member serves,
 * and are then promoted (they count as active, the first of them becomes primary).
 */
import { isServing, type MemberState } from './member-state.js';

/** A member as the election sees it. */
export interface ElectionMember {
  /** Position in the group's member order. */
  readonly index: number;
  readonly state: MemberState;
}

/** What the group must change. */
export interface ElectionResult {
  /** Index of the primary (undefined when no member serves). */
  readonly primary: number | undefined;
  /** Serving standby members to promote now, in member order. */
  readonly promote: readonly number[];
  /** Promoted standby members to demote now, in member order. */
  readonly demote: readonly number[];
}

/** Election settings. */
export interface ElectionOptions {
  /**
   * Demote promoted standby members as soon as an active member serves again (Luna's
   * behaviour); false keeps them promoted until an operator says otherwise.
   */
  readonly demoteStandbys: boolean;
}

/**
 * Decides promotions, demotions and the primary from the members' states.
 *
 * @param members all members, in member order
 */
export function electPrimary(members: readonly ElectionMember[], options: ElectionOptions): ElectionResult {
  const activeServing = members.some((m) => m.state.kind === 'active');
  const promote: number[] = [];
  const demote: number[] = [];
  const promotedAfter = new Set<number>();
  for (const m of members) {
    const s = m.state;
    if (s.kind !== 'standby') continue;
    if (!activeServing && !s.promoted) promote.push(m.index);
    else if (activeServing && s.promoted && options.demoteStandbys) demote.push(m.index);
    if ((s.promoted && !demote.includes(m.index)) || promote.includes(m.index)) promotedAfter.add(m.index);
  }
  const actsActive = (m: ElectionMember) => m.state.kind === 'active' || promotedAfter.has(m.index);
  const primary = members.find(actsActive) ?? members.find((m) => isServing(m.state));
  return { primary: primary?.index, promote, demote };
}
