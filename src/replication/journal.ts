/**
 * What each member still owes the group: replicas it missed, deletions and attribute
 * changes it did not see because it could not be reached, and TENTATIVE entries (a
 * creation on that member whose outcome is unknown: it may hold an unacknowledged
 * stray). A member that owes something for an object is not used for that object until
 * the debt is settled (recovery repairs members from this record).
 *
 * Entries hold wrapped key blobs (encrypted under the domain key, safe on disk), public
 * attributes, and object identities; never plaintext key material. What may reach the
 * file is an allowlist of attribute types ({@link WRITABLE_ATTRIBUTES}): a data object's
 * CKA_VALUE, a private key part or an unknown vendor attribute stays in memory. So a
 * data object's replica debt is not written at all (after a restart the member simply
 * lacks that object), and an attribute change that carries such a value is written
 * without it, marked `redacted` (resync then keeps it owed: it cannot be replayed).
 *
 * ## The file
 *
 * With a path, the journal is written on every change: `<path>.tmp` is written and
 * fsynced, the current file is hard-linked to `<path>.prev` (the previous good copy), the
 * tmp file is renamed over `<path>` and the directory is fsynced. A crash at any point
 * leaves a complete current file (old or new); a leftover tmp file is ignored. The file
 * is a header line `{"format","version","bytes","sha256"}` and the body's JSON: a
 * truncated or altered file is detected at open and refused with a {@link JournalError}
 * (`ERR_JOURNAL`), never silently dropped. The previous copy is one change behind, so it
 * is used only when asked (`onCorrupt: 'usePrevious'`): silently going back one change
 * could forget a deletion (a stale copy would come back) or a tentative entry (a stray
 * would stay).
 */
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { HaError } from '../errors/ha-error.js';
import type { WireAttribute } from '../pkcs11/commands.js';
import { pkcs11js } from '../pkcs11/pkcs11js.js';
import { REPLICA_ATTRIBUTES } from './replica-template.js';

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

/** One thing a member owes. */
export type Debt =
  | { readonly kind: 'replica'; readonly object: ObjectRef; readonly wrapped: Buffer | undefined; readonly template: readonly WireAttribute[] }
  | { readonly kind: 'destroy'; readonly object: ObjectRef }
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

/** Why a journal file was refused. */
export type JournalFault = 'corrupt' | 'truncated' | 'version' | 'missing' | 'io';

/** The journal file cannot be read back or written. Carries no journal content. */
export class JournalError extends HaError {
  /**
   * @param path the journal file
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

/** Options of a {@link Journal}. */
export interface JournalOptions {
  /**
   * What to do when the journal file is damaged at open: `'fail'` throws a
   * {@link JournalError} (the previous copy is one change behind; an operator decides),
   * `'usePrevious'` loads `<path>.prev` if it verifies, sets the damaged file aside as
   * `<path>.corrupt` and says so in {@link Journal.recoveredFrom}.
   * @default 'fail'
   */
  readonly onCorrupt?: 'fail' | 'usePrevious';
}

/** The `format` field of a journal file's header. */
export const JOURNAL_FORMAT = 'pkcs11-ha-journal';
/** The version this code writes. Version 1 (no header, no checksum) is still read. */
export const JOURNAL_VERSION = 2;

/** Attribute types a journal file may hold: names, flags, policy and public values. */
export const WRITABLE_ATTRIBUTES: ReadonlySet<number> = new Set([
  ...REPLICA_ATTRIBUTES.filter((t) => t !== pkcs11js.CKA_VALUE),
  pkcs11js.CKA_START_DATE,
  pkcs11js.CKA_END_DATE,
  pkcs11js.CKA_SUBJECT,
]);

interface Body {
  readonly debts: Record<string, Debt[]>;
  readonly tentative: Record<string, TentativeEntry[]>;
}

type ReadOutcome = { readonly kind: 'missing' } | { readonly kind: 'ok'; readonly body: Body } | { readonly kind: 'bad'; readonly fault: JournalFault; readonly why: string };

const BUFFER_TAG = '__b64';

function encode(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return { [BUFFER_TAG]: Buffer.from((value as { data: number[] }).data).toString('base64') };
  }
  return value;
}

function decode(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && typeof (value as Record<string, unknown>)[BUFFER_TAG] === 'string') {
    return Buffer.from((value as Record<string, string>)[BUFFER_TAG]!, 'base64');
  }
  return value;
}

/** The per-member record of debts and tentative entries. */
export class Journal {
  readonly #debts = new Map<string, Debt[]>();
  readonly #tentative = new Map<string, TentativeEntry[]>();
  readonly #path: string | undefined;
  #recoveredFrom: string | undefined;

  /**
   * @param path where to persist token-object debts and tentative entries; in memory only when undefined
   * @throws {@link JournalError} when the file is damaged (see {@link JournalOptions.onCorrupt}) or unreadable
   */
  constructor(path?: string, options: JournalOptions = {}) {
    this.#path = path;
    if (path === undefined) return;
    const current = readJournalFile(path);
    if (current.kind === 'ok') {
      this.#load(current.body);
      return;
    }
    const previous = readJournalFile(`${path}.prev`);
    if (current.kind === 'missing') {
      if (previous.kind === 'missing') return;
      // This code never removes the current file once written: something else did.
    }
    const why = current.kind === 'missing' ? 'the file is missing but a previous copy exists' : current.why;
    const fault = current.kind === 'missing' ? 'missing' : current.fault;
    const good = previous.kind === 'ok' ? `${path}.prev` : undefined;
    if (options.onCorrupt === 'usePrevious' && previous.kind === 'ok') {
      this.#load(previous.body);
      this.#recoveredFrom = `${path}.prev`;
      // Keep the damaged file for inspection; the next write must not link it over the good copy.
      if (current.kind !== 'missing') renameSync(path, `${path}.corrupt`);
      this.#persist();
      return;
    }
    throw new JournalError(path, fault, `${why}; ${good ? `a previous good copy is at ${good} (open with onCorrupt: 'usePrevious' to use it)` : 'no good previous copy exists'}`, good);
  }

  /** The previous copy the journal was loaded from because the current file was damaged, if so. */
  get recoveredFrom(): string | undefined {
    return this.#recoveredFrom;
  }

  /** Records a debt of `member`. */
  owe(member: string, debt: Debt): void {
    const list = this.#debts.get(member) ?? [];
    // A later debt about the same object supersedes a replica not yet made.
    const filtered = debt.kind === 'destroy' ? list.filter((d) => !sameObject(d.object, debt.object)) : list;
    if (debt.kind === 'destroy' && filtered.length < list.length && list.some((d) => d.kind === 'replica' && sameObject(d.object, debt.object))) {
      // It never got the object: nothing to destroy.
      this.#set(member, filtered);
      return;
    }
    this.#set(member, [...filtered, debt]);
  }

  /**
   * True when `member` owes anything for this object: by virtual handle for debts of this
   * process, by identity (name and fingerprint) for debts read back from disk.
   */
  owes(member: string, object: { readonly handle: number; readonly identity: { readonly name: string; readonly fingerprint: string | undefined } }): boolean {
    return (
      this.#debts
        .get(member)
        ?.some(
          (d) =>
            d.object.handle === object.handle ||
            // A deleted object has no handle any more, and one from an earlier process means nothing.
            ((d.object.handle < 0 || d.kind === 'destroy') && d.object.name === object.identity.name && d.object.fingerprint === object.identity.fingerprint),
        ) ?? false
    );
  }

  /** What `member` owes, oldest first. */
  debts(member: string): readonly Debt[] {
    return this.#debts.get(member) ?? [];
  }

  /** Every member that owes anything, with its debts (oldest first). */
  entries(): ReadonlyMap<string, readonly Debt[]> {
    return this.#debts;
  }

  /** Members that owe anything (debts and tentative entries), with their counts. */
  summary(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [m, d] of this.#debts) out[m] = d.length;
    for (const [m, t] of this.#tentative) out[m] = (out[m] ?? 0) + t.length;
    return out;
  }

  /** Removes a settled debt. */
  settle(member: string, debt: Debt): void {
    const list = this.debts(member);
    if (list.includes(debt)) this.#set(member, list.filter((d) => d !== debt));
  }

  /** Drops everything a member owes and its tentative entries (it left the group). */
  forgetMember(member: string): void {
    const had = this.#debts.delete(member);
    if (this.#tentative.delete(member) || had) this.#persist();
  }

  /** Drops every debt about an object (its session ended, so it is gone everywhere). */
  forgetObject(handle: number): void {
    let changed = false;
    for (const [member, list] of this.#debts) {
      const kept = list.filter((d) => d.object.handle !== handle);
      if (kept.length === list.length) continue;
      changed = true;
      if (kept.length === 0) this.#debts.delete(member);
      else this.#debts.set(member, kept);
    }
    if (changed) this.#persist();
  }

  /**
   * Records, BEFORE a creation runs on `member`, what it could leave there. Written to
   * disk before it returns, so a stray survives a crash of this process too.
   */
  markTentative(member: string, searches: readonly (readonly WireAttribute[])[]): TentativeEntry {
    const entry: TentativeEntry = { searches };
    this.#tentative.set(member, [...this.tentatives(member), entry]);
    this.#persist();
    return entry;
  }

  /** Removes a tentative entry: the creation's outcome is known (acknowledged, refused or cleaned up). */
  clearTentative(member: string, entry: TentativeEntry): void {
    const list = this.tentatives(member);
    if (!list.includes(entry)) return;
    const kept = list.filter((e) => e !== entry);
    if (kept.length === 0) this.#tentative.delete(member);
    else this.#tentative.set(member, kept);
    this.#persist();
  }

  /** The tentative entries of `member`, oldest first. */
  tentatives(member: string): readonly TentativeEntry[] {
    return this.#tentative.get(member) ?? [];
  }

  #load(body: Body): void {
    // Virtual handles of an earlier process mean nothing now: match those debts by identity.
    for (const [member, debts] of Object.entries(body.debts)) {
      if (debts.length > 0) this.#debts.set(member, debts.map((d) => ({ ...d, object: { ...d.object, handle: -1 } })));
    }
    for (const [member, entries] of Object.entries(body.tentative)) {
      if (entries.length > 0) this.#tentative.set(member, entries.map((e) => ({ searches: e.searches })));
    }
  }

  #set(member: string, debts: Debt[]): void {
    if (debts.length === 0) this.#debts.delete(member);
    else this.#debts.set(member, debts);
    this.#persist();
  }

  #persist(): void {
    const path = this.#path;
    if (path === undefined) return;
    const body: Body = { debts: {}, tentative: {} };
    for (const [member, list] of this.#debts) {
      // Token objects only (session objects die with their sessions), and only writable attributes.
      const durable = list.flatMap((d) => {
        const w = writable(d);
        return w === undefined ? [] : [w];
      });
      if (durable.length > 0) body.debts[member] = durable;
    }
    for (const [member, list] of this.#tentative) body.tentative[member] = [...list];
    const text = JSON.stringify(body, encode);
    const header = JSON.stringify({ format: JOURNAL_FORMAT, version: JOURNAL_VERSION, bytes: Buffer.byteLength(text), sha256: sha256(text) });
    try {
      writeDurably(path, `${header}\n${text}`);
    } catch (error) {
      throw new JournalError(path, 'io', `cannot be written: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, undefined, { cause: error });
    }
  }
}

function sameObject(a: ObjectRef, b: ObjectRef): boolean {
  return a.handle === b.handle;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The form of a debt that may be written to disk, or undefined when none may. */
function writable(d: Debt): Debt | undefined {
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

/** tmp + fsync, keep the current file as the previous copy, rename, fsync the directory. */
function writeDurably(path: string, content: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  keepPrevious(path);
  renameSync(tmp, path);
  try {
    const d = openSync(dir, 'r');
    try {
      fsyncSync(d);
    } finally {
      closeSync(d);
    }
  } catch {
    // Some platforms cannot fsync a directory (Windows); the rename is still atomic there.
  }
}

/** Makes `<path>.prev` the current file (a hard link: no copy, atomic replace); nothing when there is none yet. */
function keepPrevious(path: string): void {
  const staging = `${path}.prev.tmp`;
  rmSync(staging, { force: true });
  try {
    linkSync(path, staging);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    // A filesystem without hard links: copy instead.
    copyFileSync(path, staging);
  }
  renameSync(staging, `${path}.prev`);
}

/** Reads and verifies one journal file. */
function readJournalFile(path: string): ReadOutcome {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'bad', fault: 'io', why: `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  if (text.length === 0) return { kind: 'bad', fault: 'truncated', why: 'the file is empty' };
  const newline = text.indexOf('\n');
  const header = parseHeader(newline < 0 ? text : text.slice(0, newline));
  if (header === undefined) {
    // Version 1: the body alone, one line, no checksum.
    const legacy = parseBody(text, 1);
    return legacy ?? { kind: 'bad', fault: 'corrupt', why: 'neither a journal header nor a version 1 journal (damaged or truncated)' };
  }
  if (header.version > JOURNAL_VERSION) return { kind: 'bad', fault: 'version', why: `written by a newer version (format version ${header.version}; this code reads up to ${JOURNAL_VERSION})` };
  const body = newline < 0 ? '' : text.slice(newline + 1);
  const bytes = Buffer.byteLength(body);
  if (bytes < header.bytes) return { kind: 'bad', fault: 'truncated', why: `truncated (${bytes} of ${header.bytes} bytes)` };
  if (bytes > header.bytes || sha256(body) !== header.sha256) return { kind: 'bad', fault: 'corrupt', why: 'checksum mismatch' };
  return parseBody(body, header.version) ?? { kind: 'bad', fault: 'corrupt', why: 'checksum matches but the content is not a journal' };
}

function parseHeader(line: string): { version: number; bytes: number; sha256: string } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!isRecord(value) || value.format !== JOURNAL_FORMAT) return undefined;
  const { version, bytes, sha256: sum } = value;
  if (typeof version !== 'number' || !Number.isInteger(version) || typeof bytes !== 'number' || typeof sum !== 'string') return undefined;
  return { version, bytes, sha256: sum };
}

function parseBody(text: string, version: number): ReadOutcome | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text, decode);
  } catch {
    return undefined;
  }
  if (!isRecord(value)) return undefined;
  const debts = version === 1 ? value : value.debts;
  const tentative = version === 1 ? {} : value.tentative;
  if (!isRecord(debts) || !isRecord(tentative)) return undefined;
  if (!Object.values(debts).every((list) => Array.isArray(list) && list.every(isDebt))) return undefined;
  if (!Object.values(tentative).every((list) => Array.isArray(list) && list.every(isTentative))) return undefined;
  return { kind: 'ok', body: { debts: debts as Record<string, Debt[]>, tentative: tentative as Record<string, TentativeEntry[]> } };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isAttribute(value: unknown): boolean {
  if (!isRecord(value) || typeof value.type !== 'number') return false;
  const v = value.value;
  return v === undefined || typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string' || Buffer.isBuffer(v);
}

function isDebt(value: unknown): boolean {
  if (!isRecord(value) || !isRecord(value.object)) return false;
  const o = value.object;
  const ref =
    typeof o.name === 'string' &&
    (o.fingerprint === undefined || typeof o.fingerprint === 'string') &&
    typeof o.token === 'boolean' &&
    Array.isArray(o.search) &&
    o.search.every((a) => isAttribute(a) && Buffer.isBuffer((a as { value?: unknown }).value));
  if (!ref) return false;
  const template = Array.isArray(value.template) && value.template.every(isAttribute);
  switch (value.kind) {
    case 'replica':
      return template && (value.wrapped === undefined || Buffer.isBuffer(value.wrapped));
    case 'setAttributes':
      return template && (value.redacted === undefined || (Array.isArray(value.redacted) && value.redacted.every((t) => typeof t === 'number')));
    case 'destroy':
      return true;
    default:
      return false;
  }
}

function isTentative(value: unknown): boolean {
  return isRecord(value) && Array.isArray(value.searches) && value.searches.every((s) => Array.isArray(s) && s.every(isAttribute));
}
