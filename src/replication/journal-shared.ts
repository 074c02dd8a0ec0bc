/**
 * The journal of a fleet: what members owe, kept in a {@link DebtStore} that several
 * application processes share (PostgreSQL: journal-postgres.ts). Each process keeps a
 * copy in memory for the synchronous reads that routing needs, and reads the store again
 * on {@link SharedJournal.refresh} (every `refreshIntervalMs`, driven by the recovery)
 * and under each claim.
 *
 * - A debt is one row, recorded by one statement; its promise resolves once the row is
 *   durable and rejects with a {@link JournalError} when it cannot be written, so the
 *   operation that made the debt fails and rolls back (key-manager.ts). A debt that could
 *   not be written stays in this process's memory (it is not used for that object here)
 *   and is written again on the next refresh or flush.
 * - A member is repaired by the one process that holds its claim; its debts are read
 *   under the claim, and each settlement goes through it (see {@link DebtStore.claim}).
 *   A debt settled by another process leaves this copy at the next refresh.
 * - Order: rows in id order; a debt that never reaches the store (a session object's, a
 *   data object's replica: see `WRITABLE_ATTRIBUTES`) keeps its place after the rows this
 *   process knew when it was made. A deletion never cancels a replica another process
 *   may be placing: the member gets the replica, then the deletion.
 */
import { ClosedError } from '../errors/ha-error.js';
import type { WireAttribute } from '../pkcs11/commands.js';
import { owesObject, writable, type DebtJournal, type JournalClaim, type OwedObject } from './journal.js';
import type { Debt, DebtClaim, DebtRows, DebtStore, TentativeEntry, TentativeRow } from './journal-store.js';

/** Options of a {@link SharedJournal}. */
export interface SharedJournalOptions {
  /** How often the group reads the store again for what other processes did (ms). @default 1000 */
  readonly refreshIntervalMs?: number;
}

type Order = readonly [bigint, number];

/**
 * A {@link DebtJournal} over a {@link DebtStore} shared by several processes.
 *
 * @example
 * const journal = new SharedJournal(new PostgresDebtStore({ connectionString }));
 * await journal.load();
 */
export class SharedJournal implements DebtJournal {
  readonly #store: DebtStore;
  readonly refreshIntervalMs: number;
  readonly #debts = new Map<string, Debt[]>();
  readonly #tentative = new Map<string, TentativeEntry[]>();
  /** Debts and entries that are rows, both ways (the same object across refreshes). */
  readonly #ids = new Map<Debt | TentativeEntry, string>();
  /**
   * Rows this process settled or removed (`d<id>` debts, `t<id>` tentative entries): the refresh generation their deletion
   * finished in (Infinity while it runs). A read that began before then may still return
   * them, and must not bring them back (a settled replica debt revived would be taken for a
   * rolled-back creation by the next repair); kept until a read begun after it is applied.
   */
  readonly #gone = new Map<string, number>();
  #generation = 0;
  readonly #debtById = new Map<string, Debt>();
  readonly #entryById = new Map<string, TentativeEntry>();
  readonly #order = new WeakMap<Debt, Order>();
  /** Other processes' tentative entries that are not stale yet: their creations may be running, so they are not shown. */
  readonly #fresh = new Set<TentativeEntry>();
  #lastId = 0n;
  #seq = 0;
  readonly #claims = new Map<string, DebtClaim>();
  readonly #inflight = new Set<Promise<unknown>>();
  /** Writes to run again: debts not recorded, rows not removed. */
  readonly #unwritten = new Map<Debt, string>();
  #unremoved: { debts: string[]; tentatives: string[] } = { debts: [], tentatives: [] };
  #loading: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #reading: Promise<readonly string[]> | undefined;
  #unreachable = false;

  constructor(store: DebtStore, options: SharedJournalOptions = {}) {
    this.#store = store;
    this.refreshIntervalMs = options.refreshIntervalMs ?? 1000;
  }

  /** Where the rows are kept (never a credential). */
  get location(): string {
    return this.#store.location;
  }

  load(): Promise<void> {
    this.#loading ??= this.#store.load().then((rows) => void this.#apply(rows));
    return this.#loading;
  }

  owe(member: string, debt: Debt): Promise<void> {
    const list = this.debts(member);
    if (debt.kind === 'destroy') {
      const same = list.filter((d) => d.object.handle === debt.object.handle);
      if (same.some((d) => d.kind === 'replica' && writable(d) === undefined)) {
        // A replica only this process knows was never made: nothing to destroy.
        for (const d of same) this.#drop(member, d);
        return this.#track(this.#removeRows(same, []));
      }
    }
    this.#add(member, debt, [this.#lastId, ++this.#seq]);
    if (writable(debt) === undefined) return Promise.resolve();
    if (this.#closing !== undefined) return handled(Promise.reject(new ClosedError('journal')));
    return this.#track(this.#record(member, debt));
  }

  settle(member: string, debt: Debt): Promise<boolean> {
    if (!this.debts(member).includes(debt)) return Promise.resolve(false);
    const order = this.#order.get(debt)!;
    this.#drop(member, debt);
    const id = this.#ids.get(debt);
    if (id === undefined) {
      this.#unwritten.delete(debt);
      return Promise.resolve(true);
    }
    const claim = this.#claims.get(member);
    this.#gone.set(`d${id}`, Infinity);
    const settled = (claim ? claim.settle(id) : this.#store.settle(id)).then(
      (ok) => {
        this.#forget(debt);
        this.#gone.set(`d${id}`, this.#generation);
        return ok;
      },
      (error: unknown) => {
        // Still owed in the store: still owed here.
        this.#gone.delete(`d${id}`);
        this.#add(member, debt, order);
        throw error;
      },
    );
    return this.#track(settled);
  }

  withdraw(member: string, debt: Debt): Promise<void> {
    if (!this.debts(member).includes(debt)) return Promise.resolve();
    this.#drop(member, debt);
    // Its row goes without a settlement line; a removal that fails is made again later (#unremoved).
    return this.#track(this.#removeRows([debt], []));
  }

  forgetMember(member: string): Promise<void> {
    for (const d of this.debts(member)) this.#forget(d);
    for (const e of this.#entries(member)) {
      this.#fresh.delete(e);
      this.#forget(e);
    }
    this.#debts.delete(member);
    this.#tentative.delete(member);
    return this.#track(this.#store.removeMember(member));
  }

  forgetObject(handle: number): Promise<void> {
    const dropped: Debt[] = [];
    for (const [member, list] of [...this.#debts]) {
      for (const d of list) {
        if (d.object.handle !== handle) continue;
        this.#drop(member, d);
        dropped.push(d);
      }
    }
    return this.#track(this.#removeRows(dropped, []));
  }

  markTentative(member: string, searches: readonly (readonly WireAttribute[])[]): Promise<TentativeEntry> {
    const entry: TentativeEntry = { searches };
    this.#tentative.set(member, [...this.#entries(member), entry]);
    if (this.#closing !== undefined) return handled(Promise.reject(new ClosedError('journal')));
    const recorded = this.#store.recordTentative(member, entry).then(
      (id) => {
        this.#bindEntry(member, entry, id);
        return entry;
      },
      (error: unknown) => {
        // The creation never runs: nothing to keep.
        this.#dropEntry(member, entry);
        throw error;
      },
    );
    return this.#track(recorded);
  }

  clearTentative(member: string, entry: TentativeEntry): Promise<void> {
    if (!this.#entries(member).includes(entry)) return Promise.resolve();
    this.#dropEntry(member, entry);
    const id = this.#ids.get(entry);
    if (id === undefined) return Promise.resolve(); // removed when its insert returns
    this.#forget(entry);
    return this.#track(this.#removeRows([], [id]));
  }

  owes(member: string, object: OwedObject): boolean {
    return owesObject(this.#debts.get(member), object);
  }

  debts(member: string): readonly Debt[] {
    return this.#debts.get(member) ?? [];
  }

  entries(): ReadonlyMap<string, readonly Debt[]> {
    return this.#debts;
  }

  /** This process's entries, and other processes' stale ones (see {@link TentativeRow.stale}). */
  tentatives(member: string): readonly TentativeEntry[] {
    return this.#entries(member).filter((e) => !this.#fresh.has(e));
  }

  #entries(member: string): readonly TentativeEntry[] {
    return this.#tentative.get(member) ?? [];
  }

  summary(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [m, d] of this.#debts) out[m] = d.length;
    for (const m of this.#tentative.keys()) {
      const n = this.tentatives(m).length;
      if (n > 0) out[m] = (out[m] ?? 0) + n;
    }
    return out;
  }

  async claim(member: string): Promise<JournalClaim | undefined> {
    await this.load();
    await this.#rewrite().catch(() => undefined);
    const claim = await this.#store.claim(member);
    if (claim === undefined) return undefined;
    this.#apply(claim, member);
    this.#claims.set(member, claim);
    return {
      release: async () => {
        if (this.#claims.get(member) === claim) this.#claims.delete(member);
        await claim.release();
      },
    };
  }

  /** Reads the store again; concurrent calls share one read. */
  refresh(): Promise<readonly string[]> {
    if (this.#closing !== undefined) return Promise.resolve([]);
    this.#reading ??= (async () => {
      try {
        await this.load();
        await this.#rewrite().catch(() => undefined);
        const started = ++this.#generation;
        const less = this.#apply(await this.#store.read());
        for (const [id, finished] of this.#gone) if (finished < started) this.#gone.delete(id);
        this.#unreachable = false;
        return less;
      } catch (error) {
        this.#unreachable = true;
        throw error;
      } finally {
        this.#reading = undefined;
      }
    })();
    return this.#reading;
  }

  /**
   * A refresh before a search (object discovery), skipped while the store is unreachable
   * (the periodic refresh finds out when it is back): searches never wait on a dead store.
   */
  async catchUp(): Promise<void> {
    if (!this.#unreachable) await this.refresh();
  }

  async flush(): Promise<void> {
    const results = await Promise.allSettled([...this.#inflight]);
    await this.#rewrite();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await this.flush();
      } finally {
        await Promise.allSettled([...this.#claims.values()].map((c) => c.release()));
        this.#claims.clear();
        await this.#store.close();
      }
    })();
    return this.#closing;
  }

  /** Writes one debt; on failure it stays in memory and is written again later. */
  async #record(member: string, debt: Debt): Promise<void> {
    try {
      this.#bindDebt(member, debt, await this.#store.record(member, writable(debt)!));
      this.#unwritten.delete(debt);
    } catch (error) {
      this.#unwritten.set(debt, member);
      throw error;
    }
  }

  /** Runs again the writes that failed; throws the first failure. */
  async #rewrite(): Promise<void> {
    let failure: unknown;
    for (const [debt, member] of [...this.#unwritten]) {
      if (!this.debts(member).includes(debt)) {
        this.#unwritten.delete(debt);
        continue;
      }
      try {
        await this.#record(member, debt);
      } catch (error) {
        failure ??= error;
      }
    }
    const { debts, tentatives } = this.#unremoved;
    if (debts.length + tentatives.length > 0) {
      this.#unremoved = { debts: [], tentatives: [] };
      await this.#removeRows([], tentatives, debts).catch((error: unknown) => (failure ??= error));
    }
    if (failure !== undefined) throw failure;
  }

  /** Removes the rows of these debts and entries (ids given directly too); what fails is removed again later. */
  async #removeRows(debts: readonly Debt[], tentatives: readonly string[], debtIds: readonly string[] = []): Promise<void> {
    const ids = [...debtIds];
    for (const d of debts) {
      this.#unwritten.delete(d);
      const id = this.#ids.get(d);
      if (id !== undefined) ids.push(id);
      this.#forget(d);
    }
    if (ids.length + tentatives.length === 0) return;
    const gone = [...ids.map((id) => `d${id}`), ...tentatives.map((id) => `t${id}`)];
    for (const key of gone) this.#gone.set(key, Infinity);
    try {
      await this.#store.remove({ debts: ids, tentatives });
      for (const key of gone) this.#gone.set(key, this.#generation);
    } catch (error) {
      this.#unremoved.debts.push(...ids);
      this.#unremoved.tentatives.push(...tentatives);
      throw error;
    }
  }

  /** Takes the store's rows as they are (for one member, under its claim, when given); returns the members that owe less. */
  #apply(rows: DebtRows, only?: string): string[] {
    const members = new Set([...this.#debts.keys(), ...this.#tentative.keys(), ...rows.debts.map((r) => r.member), ...rows.tentatives.map((r) => r.member)]);
    const less: string[] = [];
    for (const member of members) {
      if (only !== undefined && member !== only) continue;
      const before = this.debts(member).length + this.#entries(member).length;
      const ids = new Set(rows.debts.filter((r) => r.member === member).map((r) => r.id));
      // Rows gone from the store were settled or removed by someone: gone here too.
      for (const d of this.debts(member)) {
        const id = this.#ids.get(d);
        if (id !== undefined && !ids.has(id)) {
          this.#drop(member, d);
          this.#forget(d);
        }
      }
      for (const r of rows.debts) {
        if (r.member !== member || this.#debtById.has(r.id) || this.#gone.has(`d${r.id}`)) continue;
        // Another process's virtual handles mean nothing here: matched by identity.
        const debt: Debt = { ...r.debt, object: { ...r.debt.object, handle: -1 } };
        this.#link(debt, r.id);
        this.#add(member, debt, [BigInt(r.id), 0]);
      }
      const entryIds = new Set(rows.tentatives.filter((r) => r.member === member).map((r) => r.id));
      for (const e of this.#entries(member)) {
        const id = this.#ids.get(e);
        if (id !== undefined && !entryIds.has(id)) {
          this.#dropEntry(member, e);
          this.#forget(e);
        }
      }
      for (const r of rows.tentatives) {
        if (r.member !== member || this.#gone.has(`t${r.id}`)) continue;
        const known = this.#entryById.get(r.id);
        if (known !== undefined) {
          if (r.stale) this.#fresh.delete(known);
          continue;
        }
        this.#link(r.entry, r.id);
        if (!r.stale) this.#fresh.add(r.entry);
        this.#tentative.set(member, [...this.#entries(member), r.entry]);
      }
      if (this.debts(member).length + this.#entries(member).length < before) less.push(member);
    }
    return less;
  }

  /** A recorded debt got its row id (a refresh may have taken the row in meanwhile: this object wins). */
  #bindDebt(member: string, debt: Debt, id: string): void {
    const adopted = this.#debtById.get(id);
    if (adopted !== undefined && adopted !== debt) {
      this.#drop(member, adopted);
      this.#forget(adopted);
    }
    if (!this.debts(member).includes(debt)) {
      // Settled or forgotten while its insert ran: the row is void, and goes at once (no other server may act on it).
      void this.#track(this.#removeRows([], [], [id]));
      return;
    }
    this.#link(debt, id);
    this.#drop(member, debt);
    this.#add(member, debt, [BigInt(id), 0]);
  }

  #bindEntry(member: string, entry: TentativeEntry, id: string): void {
    const adopted = this.#entryById.get(id);
    if (adopted !== undefined && adopted !== entry) {
      this.#dropEntry(member, adopted);
      this.#forget(adopted);
    }
    if (!this.#entries(member).includes(entry)) {
      void this.#track(this.#removeRows([], [id]));
      return;
    }
    this.#link(entry, id);
  }

  #link(item: Debt | TentativeEntry, id: string): void {
    this.#ids.set(item, id);
    if ('kind' in item) this.#debtById.set(id, item);
    else this.#entryById.set(id, item);
    const n = BigInt(id);
    if (n > this.#lastId) this.#lastId = n;
  }

  #forget(item: Debt | TentativeEntry): void {
    const id = this.#ids.get(item);
    this.#ids.delete(item);
    if (id === undefined) return;
    if ('kind' in item) {
      if (this.#debtById.get(id) === item) this.#debtById.delete(id);
    } else if (this.#entryById.get(id) === item) this.#entryById.delete(id);
  }

  /** Puts a debt in its member's list, in order. */
  #add(member: string, debt: Debt, order: Order): void {
    this.#order.set(debt, order);
    const list = [...this.debts(member), debt];
    list.sort((a, b) => compare(this.#order.get(a)!, this.#order.get(b)!));
    this.#debts.set(member, list);
  }

  #drop(member: string, debt: Debt): void {
    const kept = this.debts(member).filter((d) => d !== debt);
    if (kept.length === 0) this.#debts.delete(member);
    else this.#debts.set(member, kept);
  }

  #dropEntry(member: string, entry: TentativeEntry): void {
    this.#fresh.delete(entry);
    const kept = this.#entries(member).filter((e) => e !== entry);
    if (kept.length === 0) this.#tentative.delete(member);
    else this.#tentative.set(member, kept);
  }

  /** Marks a write handled (a caller that does not wait never crashes the process) and lets flush wait for it. */
  #track<T>(promise: Promise<T>): Promise<T> {
    const tracked = handled(promise);
    this.#inflight.add(tracked);
    void tracked.then(
      () => this.#inflight.delete(tracked),
      () => this.#inflight.delete(tracked),
    );
    return tracked;
  }
}

function compare(a: Order, b: Order): number {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  return a[1] - b[1];
}

function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

