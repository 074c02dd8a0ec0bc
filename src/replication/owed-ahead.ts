/**
 * Debts recorded BEFORE a deletion or an attribute change runs (write-ahead). A member that
 * does not hold the object when the change starts (failed, recovering, standby) will owe
 * it; recording that first means a journal that cannot record it fails the change with
 * nothing applied, where recording it after would leave a deletion made (it cannot be
 * undone) and its debt unrecorded. When the change is refused (CKA_DESTROYABLE false, a
 * read-only attribute), the debts are withdrawn and what each member owed for the object
 * before is owed again as it was (a recorded deletion cancels a replica not yet made):
 * only what this call added and cancelled, never another call's debts.
 *
 * A member that fails UNDER the change is not known ahead: it owes the change once it
 * failed, recorded after (docs/reliability.md says what that leaves).
 */
import type { Debt } from './journal-store.js';
import { owesObject, type DebtJournal, type OwedObject } from './journal.js';

/** One debt to record ahead. */
export interface DebtAhead {
  readonly member: string;
  readonly debt: Debt;
}

/** What recording one debt ahead changed in a member's debts about the object. */
interface Change {
  readonly member: string;
  /** Debts it added (the deletion or change; or a deletion of a leftover copy). */
  readonly added: readonly Debt[];
  /** Debts it cancelled (a replica not yet made, and the changes owed to it). */
  readonly cancelled: readonly Debt[];
}

/** Debts recorded ahead of a change, from {@link OwedAhead.record}. */
export class OwedAhead {
  readonly #journal: DebtJournal;
  readonly #changes: readonly Change[];

  private constructor(journal: DebtJournal, changes: readonly Change[]) {
    this.#journal = journal;
    this.#changes = changes;
  }

  /**
   * Records `debts` and resolves once they are durable.
   * @throws {@link JournalError} when one cannot be recorded: all of them are withdrawn first (in memory at once; in the store as soon as it answers)
   */
  static async record(journal: DebtJournal, object: OwedObject, debts: readonly DebtAhead[]): Promise<OwedAhead> {
    // A group with every member holding the object (the usual case) records nothing.
    if (debts.length === 0) return new OwedAhead(journal, []);
    const changes: Change[] = [];
    // Each owe applies in memory at once: what it added and cancelled is read right around it,
    // so a withdrawal undoes this call's changes only, never another call's.
    const writes = debts.map((d) => {
      const before = about(journal.debts(d.member), object);
      const write = journal.owe(d.member, d.debt);
      const after = about(journal.debts(d.member), object);
      changes.push({ member: d.member, added: after.filter((x) => !before.includes(x)), cancelled: before.filter((x) => !after.includes(x)) });
      return write;
    });
    const ahead = new OwedAhead(journal, changes);
    const failed = (await Promise.allSettled(writes)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed === undefined) return ahead;
    await ahead.withdraw().catch(() => undefined);
    throw failed.reason;
  }

  /** The members that owe the change already. */
  has(member: string): boolean {
    return this.#changes.some((c) => c.member === member);
  }

  /**
   * The change did not happen: the debts this call added go (no settlement is recorded),
   * those it cancelled are owed again.
   * @throws {@link JournalError} when the store cannot be written now (memory is right at once, and the journal writes it again later)
   */
  async withdraw(): Promise<void> {
    const writes: Promise<unknown>[] = [];
    for (const { member, added, cancelled } of this.#changes) {
      for (const d of added) writes.push(this.#journal.withdraw(member, d));
      for (const d of cancelled) writes.push(this.#journal.owe(member, d));
    }
    const failed = (await Promise.allSettled(writes)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }
}

/** The debts of `debts` about `object`, in their order. */
function about(debts: readonly Debt[], object: OwedObject): Debt[] {
  return debts.filter((d) => owesObject([d], object));
}
