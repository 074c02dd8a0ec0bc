/**
 * The journal in a file. Each write replaces the whole content: `<path>.tmp` is written
 * and fsynced, the current file is hard-linked to `<path>.prev` (the previous good copy),
 * the tmp file is renamed over `<path>` and the directory is fsynced. A crash at any point
 * leaves a complete current file (old or new); a leftover tmp file is ignored. All of it
 * runs on the thread pool (`node:fs/promises`), never on the event loop, and the journal
 * sends one write at a time, with every change made meanwhile (group commit).
 *
 * The file is a header line `{"format","version","bytes","sha256"}` and the body's JSON:
 * a truncated or altered file is detected at load and refused with a {@link JournalError}
 * (`ERR_JOURNAL`), never silently dropped. The previous copy is one change behind, so it
 * is used only when asked (`onCorrupt: 'usePrevious'`): silently going back one change
 * could forget a deletion (a stale copy would come back) or a tentative entry (a stray
 * would stay).
 */
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { dirname } from 'node:path';
import { JournalError, type Debt, type JournalContent, type JournalFault, type JournalStore, type TentativeEntry } from './journal-store.js';

/** The `format` field of a journal file's header. */
export const JOURNAL_FORMAT = 'pkcs11-ha-journal';
/** The version this code writes. Version 1 (no header, no checksum) is still read. */
export const JOURNAL_VERSION = 2;

/** The file operations a {@link FileJournalStore} uses (`node:fs/promises` by default): the seam where tests count or fail writes. */
export interface JournalFileSystem {
  readFile(path: string, encoding: 'utf8'): Promise<string>;
  open(path: string, flags: string, mode?: number): Promise<{ writeFile(data: string): Promise<void>; sync(): Promise<void>; close(): Promise<void> }>;
  rename(from: string, to: string): Promise<void>;
  link(existing: string, newPath: string): Promise<void>;
  copyFile(from: string, to: string): Promise<void>;
  rm(path: string, options: { force: boolean }): Promise<void>;
  mkdir(path: string, options: { recursive: true; mode?: number }): Promise<unknown>;
}

/** Options of a {@link FileJournalStore}. */
export interface FileJournalStoreOptions {
  /**
   * What to do when the journal file is damaged at load: `'fail'` throws a
   * {@link JournalError} (the previous copy is one change behind; an operator decides),
   * `'usePrevious'` loads `<path>.prev` if it verifies, sets the damaged file aside as
   * `<path>.corrupt`, writes the current file again from it and says so in
   * {@link FileJournalStore.recoveredFrom}.
   * @default 'fail'
   */
  readonly onCorrupt?: 'fail' | 'usePrevious';
  /** The file operations. @default `node:fs/promises` */
  readonly fs?: JournalFileSystem;
}

type ReadOutcome = { readonly kind: 'missing' } | { readonly kind: 'ok'; readonly body: JournalContent } | { readonly kind: 'bad'; readonly fault: JournalFault; readonly why: string };

const BUFFER_TAG = '__b64';

/**
 * A {@link JournalStore} in one file, with the previous good copy beside it.
 *
 * @example
 * const journal = new Journal(new FileJournalStore('/var/lib/app/journal.json', { onCorrupt: 'fail' }));
 * await journal.load();
 */
export class FileJournalStore implements JournalStore {
  readonly #path: string;
  readonly #fs: JournalFileSystem;
  readonly #onCorrupt: 'fail' | 'usePrevious';
  #recoveredFrom: string | undefined;
  #dirReady = false;

  constructor(path: string, options: FileJournalStoreOptions = {}) {
    this.#path = path;
    this.#fs = options.fs ?? fsp;
    this.#onCorrupt = options.onCorrupt ?? 'fail';
  }

  get location(): string {
    return this.#path;
  }

  /** `<path>.prev` when the current file was damaged and the previous copy was loaded instead. */
  get recoveredFrom(): string | undefined {
    return this.#recoveredFrom;
  }

  /**
   * @throws {@link JournalError} when the file is damaged (see {@link FileJournalStoreOptions.onCorrupt}) or unreadable
   */
  async load(): Promise<JournalContent | undefined> {
    const path = this.#path;
    const current = await this.#read(path);
    if (current.kind === 'ok') return current.body;
    const previous = await this.#read(`${path}.prev`);
    if (current.kind === 'missing') {
      if (previous.kind === 'missing') return undefined;
      // This code never removes the current file once written: something else did.
    }
    const why = current.kind === 'missing' ? 'the file is missing but a previous copy exists' : current.why;
    const fault = current.kind === 'missing' ? 'missing' : current.fault;
    const good = previous.kind === 'ok' ? `${path}.prev` : undefined;
    if (this.#onCorrupt === 'usePrevious' && previous.kind === 'ok') {
      this.#recoveredFrom = `${path}.prev`;
      // Keep the damaged file for inspection; the next write must not link it over the good copy.
      if (current.kind !== 'missing') await this.#io(() => this.#fs.rename(path, `${path}.corrupt`), 'cannot be set aside');
      await this.write(previous.body);
      return previous.body;
    }
    throw new JournalError(path, fault, `${why}; ${good ? `a previous good copy is at ${good} (open with onCorrupt: 'usePrevious' to use it)` : 'no good previous copy exists'}`, good);
  }

  /** @throws {@link JournalError} (`io`) when it cannot be written; the current file is then the one before */
  async write(content: JournalContent): Promise<void> {
    const text = JSON.stringify(content, encode);
    const header = JSON.stringify({ format: JOURNAL_FORMAT, version: JOURNAL_VERSION, bytes: Buffer.byteLength(text), sha256: sha256(text) });
    await this.#io(() => this.#writeDurably(`${header}\n${text}`), 'cannot be written');
  }

  /** Nothing stays open between writes. */
  async close(): Promise<void> {}

  async #io(op: () => Promise<unknown>, what: string): Promise<void> {
    try {
      await op();
    } catch (error) {
      if (error instanceof JournalError) throw error;
      throw new JournalError(this.#path, 'io', `${what}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, undefined, { cause: error });
    }
  }

  /** tmp + fsync, keep the current file as the previous copy, rename, fsync the directory. */
  async #writeDurably(content: string): Promise<void> {
    const fs = this.#fs;
    const path = this.#path;
    const dir = dirname(path);
    if (!this.#dirReady) {
      // Directories it makes are the owner's only (0700), like the file (0600); an existing one is left as it is.
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      this.#dirReady = true;
    }
    const tmp = `${path}.tmp`;
    const file = await fs.open(tmp, 'w', 0o600);
    try {
      await file.writeFile(content);
      await file.sync();
    } finally {
      await file.close();
    }
    await this.#keepPrevious();
    await fs.rename(tmp, path);
    try {
      const d = await fs.open(dir, 'r');
      try {
        await d.sync();
      } finally {
        await d.close();
      }
    } catch {
      // Some platforms cannot fsync a directory (Windows); the rename is still atomic there.
    }
  }

  /** Makes `<path>.prev` the current file (a hard link: no copy, atomic replace); nothing when there is none yet. */
  async #keepPrevious(): Promise<void> {
    const fs = this.#fs;
    const staging = `${this.#path}.prev.tmp`;
    await fs.rm(staging, { force: true });
    try {
      await fs.link(this.#path, staging);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      // A filesystem without hard links: copy instead.
      await fs.copyFile(this.#path, staging);
    }
    await fs.rename(staging, `${this.#path}.prev`);
  }

  /** Reads and verifies one journal file. */
  async #read(path: string): Promise<ReadOutcome> {
    let text: string;
    try {
      text = await this.#fs.readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
      return { kind: 'bad', fault: 'io', why: `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
    }
    return verify(text);
  }
}

/** JSON.stringify replacer of journal content: Buffers as `{ __b64 }`. */
export function encode(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return { [BUFFER_TAG]: Buffer.from((value as { data: number[] }).data).toString('base64') };
  }
  return value;
}

/** JSON.parse reviver of journal content (the inverse of {@link encode}). */
export function decode(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && typeof (value as Record<string, unknown>)[BUFFER_TAG] === 'string') {
    return Buffer.from((value as Record<string, string>)[BUFFER_TAG]!, 'base64');
  }
  return value;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Checks a file's text: header, length, checksum, content. */
function verify(text: string): ReadOutcome {
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

/** Whether a parsed value is a well-formed debt. */
export function isDebt(value: unknown): value is Debt {
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
      return template && (value.wrapped === undefined || Buffer.isBuffer(value.wrapped)) && (value.uncertain === undefined || value.uncertain === true);
    case 'setAttributes':
      return template && (value.redacted === undefined || (Array.isArray(value.redacted) && value.redacted.every((t) => typeof t === 'number')));
    case 'destroy':
      return value.leftover === undefined || value.leftover === true;
    default:
      return false;
  }
}

/** Whether a parsed value is a well-formed tentative entry. */
export function isTentative(value: unknown): value is TentativeEntry {
  return isRecord(value) && Array.isArray(value.searches) && value.searches.every((s) => Array.isArray(s) && s.every(isAttribute));
}
