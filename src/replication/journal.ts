/**
 * What each member still owes the group: replicas it missed, deletions and attribute
 * changes it did not see because it could not be reached, and TENTATIVE entries (a
 * creation on that member whose outcome is unknown: it may hold an unacknowledged
 * stray). A member that owes something for an object is not used for that object until
 * the debt is settled (recovery repairs members from this record).
 *
 * Entries hold wrapped key blobs (encrypted under the domain key, safe on disk), public
 * attributes, and object identities; never plaintext key material. What may reach a
 * store is an allowlist of attribute types ({@link WRITABLE_ATTRIBUTES}): a data object's
 * CKA_VALUE, a private key part or an unknown vendor attribute stays in memory. So a
 * data object's replica debt is not written at all (after a restart the member simply
 * lacks that object), and an attribute change that carries such a value is written
 * without it, marked `redacted` (resync then keeps it owed: it cannot be replayed).
 * Session objects die with their sessions: their debts stay in memory too.
 *
 * ## Durability
 *
 * A change applies in memory at once (every read sees it) and returns a promise that
 * resolves once it is durable in the {@link JournalStore} (a file: journal-file.ts). One
 * writer sends the store a snapshot at a time; every change made while a write is in
 * progress goes into the next one (group commit), so a burst of misses costs a few
 * writes, and none of them runs on the event loop. A change that reaches no store (no
 * store, a session object) resolves at once. A write that fails rejects every waiting
 * promise with a {@link JournalError}; the change stays in memory and the next write,
 * {@link Journal.flush} or {@link Journal.close} writes it again (and reports if that
 * fails too). The promises are marked handled: a caller that does not wait never crashes
 * the process on a write error.
 */
import { ClosedError } from '../errors/ha-error.js';
import type { WireAttribute } from '../pkcs11/commands.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { FileJournalStore } from './journal-file.js';
import { JournalError, type Debt, type JournalContent, type JournalStore, type ObjectRef, type TentativeEntry } from './journal-store.js';
import { REPLICA_ATTRIBUTES } from './replica-template.js';

export { JOURNAL_FORMAT, JOURNAL_VERSION } from './journal-file.js';
export { JournalError } from './journal-store.js';
export type { Debt, JournalFault, ObjectRef, TentativeEntry } from './journal-store.js';

/** Attribute types a journal store may hold: names, flags, policy and public values. */
export const WRITABLE_ATTRIBUTES: ReadonlySet<number> = new Set([
  ...REPLICA_ATTRIBUTES.filter((t) => t !== pkcs11js.CKA_VALUE),
  pkcs11js.CKA_START_DATE,
  pkcs11js.CKA_END_DATE,
  pkcs11js.CKA_SUBJECT,
]);

/** An object as {@link DebtJournal.owes} looks it up: by virtual handle, or by identity. */
export interface OwedObject {
  readonly handle: number;
  readonly identity: { readonly name: string; readonly fingerprint: string | undefined };
}

/**
 * What the library needs from a journal. Reads are synchronous: they serve routed calls.
 * A change applies in memory at once and its promise resolves once it is durable; a call
 * whose success depends on a recorded debt waits for it. {@link Journal} is the journal
 * of one process; a journal shared by several processes implements this interface too.
 */
export interface DebtJournal {
  /**
   * Reads what was recorded before this process started; call it once, before use.
   * @throws {@link JournalError} when the record is damaged or unreadable
   */
  load(): Promise<void>;
  /** Records a debt of `member`. A deletion cancels a replica of the same object not yet made. */
  owe(member: string, debt: Debt): Promise<void>;
  /** Removes a settled debt; resolves to false when it was not (or no longer) recorded. */
  settle(member: string, debt: Debt): Promise<boolean>;
  /**
   * Removes a debt recorded ahead of a change that did not happen (owed-ahead.ts): gone from
   * memory at once, no settlement recorded; a store that cannot be written now is written
   * again later (the promise rejects meanwhile).
   */
  withdraw(member: string, debt: Debt): Promise<void>;
  /** Drops everything a member owes and its tentative entries (it left the group). */
  forgetMember(member: string): Promise<void>;
  /** Drops every debt about an object (it is gone everywhere). */
  forgetObject(handle: number): Promise<void>;
  /** Records, before a creation runs on `member`, what it could leave there; resolves once durable. */
  markTentative(member: string, searches: readonly (readonly WireAttribute[])[]): Promise<TentativeEntry>;
  /** Removes a tentative entry: the creation's outcome is known. */
  clearTentative(member: string, entry: TentativeEntry): Promise<void>;
  /** True when `member` owes anything for this object. */
  owes(member: string, object: OwedObject): boolean;
  /** What `member` owes, oldest first. */
  debts(member: string): readonly Debt[];
  /** Every member that owes anything, with its debts (oldest first). */
  entries(): ReadonlyMap<string, readonly Debt[]>;
  /** The tentative entries of `member`, oldest first. */
  tentatives(member: string): readonly TentativeEntry[];
  /** Members that owe anything (debts and tentative entries), with their counts. */
  summary(): Record<string, number>;
  /**
   * Resolves once every change made so far is durable.
   * @throws {@link JournalError} when it cannot be written
   */
  flush(): Promise<void>;
  /** Flushes, then refuses durability to later changes (they reject with `ERR_CLOSED`). Idempotent. */
  close(): Promise<void>;
  /**
   * Takes the right to repair `member` (remove its strays, settle what it owes) until
   * released; what it owes is read again under the claim. Undefined when another process
   * sharing the journal holds it now: that one repairs the member.
   * @throws {@link JournalError} when the journal cannot be reached
   */
  claim(member: string): Promise<JournalClaim | undefined>;
  /**
   * Reads again what other processes recorded and settled (a journal of one process has
   * nothing to read); resolves to the members that owe less than before.
   * @throws {@link JournalError} when the journal cannot be reached
   */
  refresh(): Promise<readonly string[]>;
  /** How often {@link DebtJournal.refresh} is worth calling (ms): set for a journal shared with other processes. */
  readonly refreshIntervalMs: number | undefined;
}

/** The right to repair one member, from {@link DebtJournal.claim}. */
export interface JournalClaim {
  /** Gives the claim up; idempotent. */
  release(): Promise<void>;
}

/** Options of a {@link Journal} kept in a file (a path given to its constructor). */
export interface JournalOptions {
  /**
   * What to do when the journal file is damaged at load: `'fail'` throws a
   * {@link JournalError} (the previous copy is one change behind; an operator decides),
   * `'usePrevious'` loads `<path>.prev` if it verifies, sets the damaged file aside as
   * `<path>.corrupt` and says so in {@link Journal.recoveredFrom}.
   * @default 'fail'
   */
  readonly onCorrupt?: 'fail' | 'usePrevious';
}

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * The per-member record of debts and tentative entries, in memory, kept durable in a
 * {@link JournalStore} when given one.
 *
 * @example
 * const journal = await Journal.open('/var/lib/app/journal.json');
 * await journal.owe('member-3', { kind: 'destroy', object: ref }); // durable on return
 * await journal.close();
 */
export class Journal implements DebtJournal {
  readonly #debts = new Map<string, Debt[]>();
  readonly #tentative = new Map<string, TentativeEntry[]>();
  readonly #store: JournalStore | undefined;
  #loading: Promise<void> | undefined;
  /** Changes that reach the store, counted; and how many of them the last good write held. */
  #changes = 0;
  #durable = 0;
  /** The write that starts next: every change made until it starts waits for it. */
  #next: Deferred | undefined;
  /** The write in progress, and how many changes it holds. */
  #writing: { readonly upTo: number; readonly done: Promise<void> } | undefined;
  #draining = false;
  #closing: Promise<void> | undefined;
  #storeClosed = false;

  /**
   * Touches no store: call {@link Journal.load} (or use {@link Journal.open}).
   * @param store where to keep token-object debts and tentative entries: a store, or a file path; in memory only when undefined
   */
  constructor(store?: JournalStore | string, options: JournalOptions = {}) {
    this.#store = typeof store === 'string' ? new FileJournalStore(store, options) : store;
  }

  /**
   * A journal, loaded.
   * @throws {@link JournalError} when the record is damaged (see {@link JournalOptions.onCorrupt}) or unreadable
   */
  static async open(store?: JournalStore | string, options?: JournalOptions): Promise<Journal> {
    const journal = new Journal(store, options);
    await journal.load();
    return journal;
  }

  /** The previous copy the journal was loaded from because the current one was damaged, if so. */
  get recoveredFrom(): string | undefined {
    return this.#store?.recoveredFrom;
  }

  /**
   * Reads the store once (later calls share the outcome). The writer calls it before its
   * first write, so a store is never written over before it is read; what was recorded
   * comes before the changes of this process.
   * @throws {@link JournalError} when the record is damaged or unreadable
   */
  load(): Promise<void> {
    this.#loading ??= this.#read();
    return this.#loading;
  }

  owe(member: string, debt: Debt): Promise<void> {
    const list = this.#debts.get(member) ?? [];
    if (debt.kind === 'destroy' && list.some((d) => d.kind === 'replica' && sameObject(d.object, debt.object))) {
      // It never got the object: nothing to destroy, and nothing to change on it. Unless it
      // failed while taking its copy: the copy may exist, and must go (the chaos run).
      const same = list.filter((d) => sameObject(d.object, debt.object));
      const uncertain = same.find((d) => d.kind === 'replica' && d.uncertain === true);
      // That copy carries the name it was made under: the changes owed since never reached
      // it, and go with the replica. The deletion must look for it by that name (the chaos
      // run: a renamed key's copy came back under its first label).
      const owed: Debt | undefined = uncertain === undefined ? undefined : { kind: 'destroy', object: uncertain.object, leftover: true };
      this.#set(member, [...list.filter((d) => !sameObject(d.object, debt.object)), ...(owed ? [owed] : [])]);
      return this.#commit(same.some(persisted) || (owed !== undefined && persisted(owed)));
    }
    // Changes the member missed stay owed before the deletion: the member still shows the
    // name from before them, and resync applies them first, so the deletion then finds the
    // object under the name it records (the object's last one).
    this.#set(member, [...list, debt]);
    return this.#commit(persisted(debt));
  }

  /**
   * True when `member` owes anything for this object: by virtual handle for debts of this
   * process, by identity (name and fingerprint) for debts read back from disk.
   */
  owes(member: string, object: OwedObject): boolean {
    return owesObject(this.#debts.get(member), object);
  }

  debts(member: string): readonly Debt[] {
    return this.#debts.get(member) ?? [];
  }

  entries(): ReadonlyMap<string, readonly Debt[]> {
    return this.#debts;
  }

  summary(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [m, d] of this.#debts) out[m] = d.length;
    for (const [m, t] of this.#tentative) out[m] = (out[m] ?? 0) + t.length;
    return out;
  }

  settle(member: string, debt: Debt): Promise<boolean> {
    const list = this.debts(member);
    if (!list.includes(debt)) return Promise.resolve(false);
    this.#set(member, list.filter((d) => d !== debt));
    return handled(this.#commit(persisted(debt)).then(() => true));
  }

  withdraw(member: string, debt: Debt): Promise<void> {
    // A snapshot store: removed from the next snapshot, which a failed write leaves to the one after.
    return this.settle(member, debt).then(() => undefined);
  }

  forgetMember(member: string): Promise<void> {
    const debts = this.#debts.get(member) ?? [];
    const tentative = this.#tentative.delete(member);
    this.#debts.delete(member);
    return this.#commit(tentative || debts.some(persisted));
  }

  forgetObject(handle: number): Promise<void> {
    let dropped = false;
    for (const [member, list] of this.#debts) {
      const kept = list.filter((d) => d.object.handle !== handle);
      if (kept.length === list.length) continue;
      dropped ||= list.some((d) => d.object.handle === handle && persisted(d));
      if (kept.length === 0) this.#debts.delete(member);
      else this.#debts.set(member, kept);
    }
    return this.#commit(dropped);
  }

  /**
   * Records, BEFORE a creation runs on `member`, what it could leave there. Run the
   * creation only once the promise resolves: then a stray survives a crash of this
   * process too. The entry is in memory at once (and stays there if the write fails).
   */
  markTentative(member: string, searches: readonly (readonly WireAttribute[])[]): Promise<TentativeEntry> {
    const entry: TentativeEntry = { searches };
    this.#tentative.set(member, [...this.tentatives(member), entry]);
    return handled(this.#commit(true).then(() => entry));
  }

  clearTentative(member: string, entry: TentativeEntry): Promise<void> {
    const list = this.tentatives(member);
    if (!list.includes(entry)) return Promise.resolve();
    const kept = list.filter((e) => e !== entry);
    if (kept.length === 0) this.#tentative.delete(member);
    else this.#tentative.set(member, kept);
    return this.#commit(true);
  }

  tentatives(member: string): readonly TentativeEntry[] {
    return this.#tentative.get(member) ?? [];
  }

  /** One process owns this journal: every claim is granted. */
  async claim(): Promise<JournalClaim> {
    return { release: async () => undefined };
  }

  /** Nothing else writes this journal: nothing to read again. */
  async refresh(): Promise<readonly string[]> {
    return [];
  }

  readonly refreshIntervalMs: number | undefined = undefined;

  flush(): Promise<void> {
    if (this.#store === undefined || this.#durable === this.#changes || this.#storeClosed) return Promise.resolve();
    if (this.#next === undefined && this.#writing?.upTo === this.#changes) return this.#writing.done;
    return this.#enqueue();
  }

  /** Waits for the last write (a change still unsaved is written first), then closes the store. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // Changes from now on are refused (#closing is set): the flush's write is the last one.
    try {
      await this.flush();
    } finally {
      // Nothing is written after this: a late flush (a recovery outliving the group) is a no-op.
      this.#storeClosed = true;
      await this.#store?.close();
    }
  }

  async #read(): Promise<void> {
    const content = await this.#store?.load();
    if (content === undefined) return;
    // Virtual handles of an earlier process mean nothing now: match those debts by identity.
    for (const [member, debts] of Object.entries(content.debts)) {
      if (debts.length > 0) this.#debts.set(member, [...debts.map((d) => ({ ...d, object: { ...d.object, handle: -1 } })), ...this.debts(member)]);
    }
    for (const [member, entries] of Object.entries(content.tentative)) {
      if (entries.length > 0) this.#tentative.set(member, [...entries.map((e) => ({ searches: e.searches })), ...this.tentatives(member)]);
    }
  }

  #set(member: string, debts: Debt[]): void {
    if (debts.length === 0) this.#debts.delete(member);
    else this.#debts.set(member, debts);
  }

  /** A change was made in memory; `stored` when it changes what the store holds. */
  #commit(stored: boolean): Promise<void> {
    if (!stored || this.#store === undefined) return Promise.resolve();
    this.#changes++;
    if (this.#closing !== undefined) return handled(Promise.reject(new ClosedError('journal')));
    return this.#enqueue();
  }

  #enqueue(): Promise<void> {
    if (this.#next === undefined) this.#next = deferred();
    if (!this.#draining) {
      this.#draining = true;
      // Started after the current turn: the changes made in it share the first write.
      queueMicrotask(() => void this.#drain());
    }
    return this.#next.promise;
  }

  /** The single writer: one snapshot at a time, each with every change made before it starts. */
  async #drain(): Promise<void> {
    const store = this.#store!;
    while (this.#next !== undefined) {
      let batch: Deferred | undefined;
      try {
        await this.load();
        batch = this.#next;
        this.#next = undefined;
        const upTo = this.#changes;
        this.#writing = { upTo, done: batch.promise };
        await store.write(this.#content());
        this.#durable = Math.max(this.#durable, upTo);
        batch.resolve();
      } catch (error) {
        if (batch === undefined) {
          batch = this.#next!;
          this.#next = undefined;
        }
        batch.reject(error instanceof JournalError ? error : new JournalError(store.location, 'io', `cannot be written: ${(error as Error).message}`, undefined, { cause: error }));
      }
      this.#writing = undefined;
    }
    this.#draining = false;
  }

  /** What may leave memory: token objects only, and only writable attributes. */
  #content(): JournalContent {
    const debts: Record<string, Debt[]> = {};
    const tentative: Record<string, TentativeEntry[]> = {};
    for (const [member, list] of this.#debts) {
      const durable = list.flatMap((d) => {
        const w = writable(d);
        return w === undefined ? [] : [w];
      });
      if (durable.length > 0) debts[member] = durable;
    }
    for (const [member, list] of this.#tentative) tentative[member] = [...list];
    return { debts, tentative };
  }
}

/** By virtual handle; debts read back from the store all have handle -1, so those by identity too. */
function sameObject(a: ObjectRef, b: ObjectRef): boolean {
  return a.handle === b.handle && (a.handle >= 0 || (a.name === b.name && a.fingerprint === b.fingerprint));
}

/** Whether a debt reaches the store (in some form). */
function persisted(d: Debt): boolean {
  return writable(d) !== undefined;
}

/** The form of a debt that may be written to a store, or undefined when none may (see the module comment). */
export function writable(d: Debt): Debt | undefined {
  if (!d.object.token) return undefined;
  // A data object's replica needs its value: it stays in memory (see the module comment).
  if (d.kind === 'replica') return d.template.every((a) => WRITABLE_ATTRIBUTES.has(a.type)) ? d : undefined;
  if (d.kind === 'setAttributes') {
    const dropped = d.template.filter((a) => !WRITABLE_ATTRIBUTES.has(a.type)).map((a) => a.type);
    if (dropped.length === 0) return d;
    return { ...d, template: d.template.filter((a) => WRITABLE_ATTRIBUTES.has(a.type)), redacted: [...(d.redacted ?? []), ...dropped] };
  }
  return d;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = handled(
    new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    }),
  );
  return { promise, resolve, reject };
}

/** Marks a promise handled (a caller that does not wait must not crash the process); awaiting it still throws. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/**
 * True when one of `debts` is about `object`: by virtual handle for debts of this process,
 * by identity (name and fingerprint) for debts read back from disk or from another process.
 */
export function owesObject(debts: readonly Debt[] | undefined, object: OwedObject): boolean {
  return (
    debts?.some(
      (d) =>
        d.object.handle === object.handle ||
        // A deleted object has no handle any more, and one from an earlier process means nothing.
        ((d.object.handle < 0 || d.kind === 'destroy') && d.object.name === object.identity.name && d.object.fingerprint === object.identity.fingerprint),
    ) ?? false
  );
}
