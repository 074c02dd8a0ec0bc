/**
 * What the journal records, and the seam where it is kept: a {@link JournalStore} holds
 * the journal's content durably (`FileJournalStore`, journal-file.ts, in a file). The journal keeps
 * its state in memory and hands the store one snapshot at a time; a store never sees a
 * secret value or a session object (see `WRITABLE_ATTRIBUTES` in journal.ts).
 */
import { HaError } from '../errors/ha-error.js';
import type { WireAttribute } from '../pkcs11/commands.js';

/** How to find an object again on a member: its search template and fingerprint. */
export interface ObjectRef {
  /** The virtual handle in this process (-1 for a debt read back from disk: meaningless after a restart). */
  readonly handle: number;
  /** Identity name (class/type/label/id/token). */
  readonly name: string;
  readonly fingerprint: string | undefined;
  readonly search: readonly { readonly type: number; readonly value: Buffer }[];
  /** Token object (survives restarts) or session object (dies with its session). */
  readonly token: boolean;
}

/** The reference to a virtual object that survives in the journal. */
export function objectRef(object: { readonly handle: number; readonly identity: Omit<ObjectRef, 'handle'> }): ObjectRef {
  const { name, fingerprint, search, token } = object.identity;
  return { handle: object.handle, name, fingerprint, search, token };
}

/** One thing a member owes. */
export type Debt =
  | {
      readonly kind: 'replica';
      readonly object: ObjectRef;
      readonly wrapped: Buffer | undefined;
      readonly template: readonly WireAttribute[];
      /** The member failed while taking this copy: it may hold it already (a later deletion is then owed, not dropped). */
      readonly uncertain?: true;
    }
  | {
      readonly kind: 'destroy';
      readonly object: ObjectRef;
      /** The deletion of a copy the member may have made while it failed under the copying, of an object destroyed since: under its name, an object showing no key material is that copy. */
      readonly leftover?: true;
    }
  | {
      readonly kind: 'setAttributes';
      readonly object: ObjectRef;
      readonly template: readonly WireAttribute[];
      /** Attribute types left out of the file (secret values): set only on a debt read back from disk. */
      readonly redacted?: readonly number[];
    };

/**
 * A creation started on a member whose outcome is not known (the member failed under
 * it): the member may hold an object nobody acknowledged. Each search finds the objects
 * the creation could have made (class, key type, label, id, CKA_TOKEN=true).
 */
export interface TentativeEntry {
  readonly searches: readonly (readonly WireAttribute[])[];
}

/** What a store keeps: per member, its debts and tentative entries, oldest first. */
export interface JournalContent {
  readonly debts: Readonly<Record<string, readonly Debt[]>>;
  readonly tentative: Readonly<Record<string, readonly TentativeEntry[]>>;
}

/** Why a journal was refused. */
export type JournalFault = 'corrupt' | 'truncated' | 'version' | 'missing' | 'io';

/** Code `ERR_JOURNAL`: the journal cannot be read back or written. Carries no journal content. */
export class JournalError extends HaError {
  /**
   * @param path the journal file (a store's `JournalStore.location`)
   * @param fault what is wrong with it
   * @param previous the previous good copy, when one exists and verifies
   */
  constructor(
    readonly path: string,
    readonly fault: JournalFault,
    message: string,
    readonly previous?: string,
    options?: { cause?: unknown },
  ) {
    super('ERR_JOURNAL', `journal ${path}: ${message}`, options);
  }
}

/**
 * Where a journal's content is kept. The journal calls {@link JournalStore.write} from one
 * writer at a time, each time with everything it holds (changes made meanwhile coalesce
 * into the next call: group commit), so a store only has to make one snapshot durable.
 *
 * @example
 * // A store that keeps the last snapshot in memory (tests count writes this way).
 * const store: JournalStore = { location: 'memory', load: async () => last, write: async (c) => { last = c; }, close: async () => {} };
 */
export interface JournalStore {
  /** Where the content is kept, for messages (a path; never a credential). */
  readonly location: string;
  /** The previous copy the content was loaded from because the current one was damaged, if so. */
  readonly recoveredFrom?: string | undefined;
  /**
   * Reads what was recorded; undefined when nothing was.
   * @throws {@link JournalError} when it is damaged or cannot be read
   */
  load(): Promise<JournalContent | undefined>;
  /**
   * Replaces what is recorded with `content`; resolves once it is durable. The store may
   * keep `content` (the journal never changes it afterwards).
   * @throws {@link JournalError} (or any error, which the journal wraps in one) when it cannot be written
   */
  write(content: JournalContent): Promise<void>;
  /** Releases what the store holds open; called once, after the last write. */
  close(): Promise<void>;
}

/** A debt as a {@link DebtStore} keeps it: its id (ids grow: the store's order, oldest first) and member. */
export interface DebtRow {
  readonly id: string;
  readonly member: string;
  readonly debt: Debt;
}

/** A tentative entry as a {@link DebtStore} keeps it. */
export interface TentativeRow {
  readonly id: string;
  readonly member: string;
  readonly entry: TentativeEntry;
  /**
   * Older than any creation can take: the process that recorded it is gone or lost it. Only
   * then does another process act on it (its creation may still be running otherwise).
   */
  readonly stale: boolean;
}

/** What a {@link DebtStore} holds, oldest first. */
export interface DebtRows {
  readonly debts: readonly DebtRow[];
  readonly tentatives: readonly TentativeRow[];
}

/**
 * The right to repair one member, held by one claimant at a time across every process
 * that shares the store. What the member owes is read under the claim, and settlements go
 * through the claim (they fail once it is lost, e.g. its connection dropped).
 */
export interface DebtClaim extends DebtRows {
  /** Removes a settled debt; false when it was gone already (removed by someone else). */
  settle(id: string): Promise<boolean>;
  /** Gives the claim up; idempotent. */
  release(): Promise<void>;
}

/**
 * A store of debts as rows, shared by several processes (the PostgreSQL journal:
 * journal-postgres.ts): each change is one durable row operation, and a member is
 * repaired by the one claimant that holds its {@link DebtClaim}.
 */
export interface DebtStore {
  /** Where the rows are kept, for messages: never a credential. */
  readonly location: string;
  /**
   * Creates or migrates the store's schema, then reads every row.
   * @throws {@link JournalError} when it cannot be reached, read or migrated
   */
  load(): Promise<DebtRows>;
  /** Reads every row again (what other processes recorded and settled). */
  read(): Promise<DebtRows>;
  /** Records a debt; resolves to its id once durable. */
  record(member: string, debt: Debt): Promise<string>;
  /** Records a tentative entry; resolves to its id once durable. */
  recordTentative(member: string, entry: TentativeEntry): Promise<string>;
  /** Settles a debt outside a claim; false when it was gone already. */
  settle(id: string): Promise<boolean>;
  /** Removes debts and tentative entries by id (no settlement: they are void). */
  remove(ids: { readonly debts?: readonly string[]; readonly tentatives?: readonly string[] }): Promise<void>;
  /** Removes everything `member` owes and its tentative entries. */
  removeMember(member: string): Promise<void>;
  /** Claims `member` for repair; undefined when another claimant holds it now (it is not waited for). */
  claim(member: string): Promise<DebtClaim | undefined>;
  /** Releases connections; called once. */
  close(): Promise<void>;
}
