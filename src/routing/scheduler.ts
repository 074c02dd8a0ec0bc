/**
 * Choosing a member for a load-balanced command. The router decides WHO may serve
 * (serving members that hold the object, active before standby: {@link eligible});
 * a {@link Scheduler} only picks among them. A new strategy is one new file.
 */
import type { MemberRole } from '../member/member-state.js';

/** What a scheduler may look at when it picks. */
export interface Candidate {
  /** Position in the group's member order. */
  readonly index: number;
  /** Commands queued + running on the member now. */
  readonly outstanding: number;
  /**
   * Commands the member's host runs or queues for other application processes, as the
   * host reported them (0 or absent when not counted): load seen across processes.
   */
  readonly hostLoad?: number;
}

/** A member as the router sees it when filtering candidates. */
export interface RoutableMember extends Candidate {
  readonly role: MemberRole;
  /** A standby member promoted to serve as an active one (no active member was left). */
  readonly promoted?: boolean;
  readonly serving: boolean;
}

/** A load-balancing strategy. */
export interface Scheduler {
  /** A short name, for status output. */
  readonly name: string;
  /**
   * Picks one of `candidates` (never empty, sorted by index), or undefined to refuse.
   * Called on the hot path: no allocation, no I/O.
   */
  pick<C extends Candidate>(candidates: readonly C[]): C | undefined;
  /**
   * Told when a command the router sent to member `index` settles, with how long it took
   * (ms, by the group's clock). Latency-aware strategies keep their cost from this;
   * others leave it out (the router then does not time commands at all).
   *
   * @param ok false when the member failed under the command (a member fault)
   */
  observe?(index: number, latencyMs: number, ok: boolean): void;
}

/**
 * The members that may serve a command: serving members for which `holds` is true;
 * active (or promoted) ones only, unless none of those can serve, then standby ones
 * (Luna: a standby member takes load only when no active member is left).
 *
 * @param members all members in group order
 * @param holds whether a member holds what the command needs (the key); all when omitted
 */
export function eligible<M extends RoutableMember>(members: readonly M[], holds?: (member: M) => boolean): M[] {
  const active: M[] = [];
  const standby: M[] = [];
  for (const m of members) {
    if (!m.serving || (holds !== undefined && !holds(m))) continue;
    (m.role === 'active' || m.promoted === true ? active : standby).push(m);
  }
  return active.length > 0 ? active : standby;
}
