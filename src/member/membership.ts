/**
 * The group's members and its primary: the one collaborator that the router, key
 * management, login, discovery and recovery are handed to find members, instead of
 * asking the group. Elections are applied here (see {@link electPrimary}).
 */
import type { Member } from './member.js';
import { electPrimary, type ElectionOptions } from './primary-election.js';

/** What one election changed, for the group to announce. */
export interface ElectionChanges {
  readonly promoted: readonly string[];
  readonly demoted: readonly string[];
  /** Set when the primary changed. */
  readonly primary?: { readonly previous: string | undefined; readonly current: string | undefined };
}

/** The members of a group, in member order, and its primary. */
export class Membership {
  readonly #members: Member[] = [];
  readonly #options: ElectionOptions;
  #primary: Member | undefined;
  readonly #catchingUp = new Set<Member>();

  constructor(options: ElectionOptions) {
    this.#options = options;
  }

  /** Every member ever added, removed ones included (their index is their position). */
  get all(): readonly Member[] {
    return this.#members;
  }

  /** The member that runs key management and multi-part operations, if any serves. */
  get primary(): Member | undefined {
    return this.#primary;
  }

  /** Adds a member at the end of the member order. */
  add(member: Member): void {
    this.#members.push(member);
  }

  /** The member of that name, unless removed. */
  byName(name: string): Member | undefined {
    return this.#members.find((m) => m.name === name && m.state.kind !== 'removed');
  }

  /** The member at a position in member order. */
  at(index: number): Member | undefined {
    return this.#members[index];
  }

  /** Serving members, primary first, then the rest in member order. */
  serving(): Member[] {
    const serving = this.#members.filter((m) => m.serving);
    const primary = this.#primary;
    return primary ? [primary, ...serving.filter((m) => m !== primary)] : serving;
  }

  /**
   * Marks a recovering member as catching up, or no longer. While it catches up, new token
   * objects are copied to it at once instead of owed, so that what it owes stops growing
   * and its resync ends (the chaos run: a member recovering under constant key creation
   * was owed debts as fast as it settled them, for 300 s).
   */
  catchUp(member: Member, on: boolean): void {
    if (on) this.#catchingUp.add(member);
    else this.#catchingUp.delete(member);
  }

  /** Whether new token objects are copied to `member` now: it serves, or it recovers and catches up. */
  takesCopies(member: Member): boolean {
    return member.serving || (member.state.kind === 'recovering' && this.#catchingUp.has(member));
  }

  /** Runs an election and applies it: promotes and demotes standby members, moves the primary. */
  elect(): ElectionChanges {
    const result = electPrimary(this.#members, this.#options);
    const promoted = result.promote.filter((i) => this.#members[i]!.setPromoted(true)).map((i) => this.#members[i]!.name);
    const demoted = result.demote.filter((i) => this.#members[i]!.setPromoted(false)).map((i) => this.#members[i]!.name);
    const next = result.primary === undefined ? undefined : this.#members[result.primary];
    if (next === this.#primary) return { promoted, demoted };
    const previous = this.#primary?.name;
    this.#primary = next;
    return { promoted, demoted, primary: { previous, current: next?.name } };
  }
}
