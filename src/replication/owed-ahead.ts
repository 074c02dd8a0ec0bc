/**
 * Debts recorded BEFORE a deletion or an attribute change runs (write-ahead). A member that
 * does not hold the object when the change starts (failed, recovering, standby) will owe
 * it; recording that first means a journal that cannot record it fails the change with
 * nothing applied, where recording it after would leave a deletion made (it cannot be
 * undone) and its debt unrecorded. When the change is refused (CKA_DESTROYABLE false, a
 * read-only attribute), the debts are withdrawn and what each member owed for the object
 * before is owed again as it was (a recorded deletion cancels a replica not yet made).
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

/** Debts recorded ahead of a change, from {@link OwedAhead.record}. */
export class OwedAhead {
  readonly #journal: DebtJournal;
  readonly #object: OwedObject;
  /** Per member: what it owed for the object before. */
  readonly #before: ReadonlyMap<string, readonly Debt[]>;

  private constructor(journal: DebtJournal, object: OwedObject, before: ReadonlyMap<string, readonly Debt[]>) {
    this.#journal = journal;
    this.#object = object;
    this.#before = before;
  }

  /**
   * Records `debts` and resolves once they are durable.
   * @throws {@link JournalError} when one cannot be recorded: all of them are withdrawn first (in memory at once; in the store as soon as it answers)
   */
  static async record(journal: DebtJournal, object: OwedObject, debts: readonly DebtAhead[]): Promise<OwedAhead> {
    const before = new Map(debts.map((d) => [d.member, about(journal.debts(d.member), object)]));
    const ahead = new OwedAhead(journal, object, before);
    if (debts.length === 0) return ahead;
    const results = await Promise.allSettled(debts.map((d) => journal.owe(d.member, d.debt)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed === undefined) return ahead;
    await ahead.withdraw().catch(() => undefined);
    throw failed.reason;
  }

  /** The members that owe the change already. */
  has(member: string): boolean {
    return this.#before.has(member);
  }

  /**
   * The change did not happen: each member owes for the object what it owed before.
   * @throws {@link JournalError} when the store cannot be written now (memory is right at once, and the journal writes it again later)
   */
  async withdraw(): Promise<void> {
    const writes: Promise<unknown>[] = [];
    for (const [member, before] of this.#before) {
      const now = about(this.#journal.debts(member), this.#object);
      for (const d of now) if (!before.includes(d)) writes.push(this.#journal.settle(member, d));
      for (const d of before) if (!now.includes(d)) writes.push(this.#journal.owe(member, d));
    }
    const failed = (await Promise.allSettled(writes)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }
}

/** The debts of `debts` about `object`, in their order. */
function about(debts: readonly Debt[], object: OwedObject): Debt[] {
  return debts.filter((d) => owesObject([d], object));
}
