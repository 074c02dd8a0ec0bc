/**
 * What each member still owes the group: replicas it missed, deletions and attribute
 * changes it did not see because it could not be reached. A member that owes something
 * for an object is not used for that object until the debt is settled (recovery repairs
 * members from this record).
 *
 * Entries hold wrapped key blobs (encrypted under the domain key, safe on disk), public
 * attributes, and object identities; never plaintext key material. When a path is
 * configured the journal is written there (atomically: write then rename) on every
 * change, and read back at open, so debts survive a restart of the application.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { WireAttribute } from '../pkcs11/commands.js';
import { pkcs11js } from '../pkcs11/pkcs11js.js';

/** How to find an object again on a member: its search template and fingerprint. */
export interface ObjectRef {
  /** The virtual handle in this process (not meaningful after a restart). */
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
  | { readonly kind: 'setAttributes'; readonly object: ObjectRef; readonly template: readonly WireAttribute[] };

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

/** The per-member record of debts. */
export class Journal {
  readonly #debts = new Map<string, Debt[]>();
  readonly #path: string | undefined;

  /** @param path where to persist token-object debts; in memory only when undefined */
  constructor(path?: string) {
    this.#path = path;
    if (path === undefined) return;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return;
    }
    const data = JSON.parse(text, decode) as Record<string, Debt[]>;
    // Virtual handles of an earlier process mean nothing now: match those debts by identity.
    for (const [member, debts] of Object.entries(data)) {
      this.#debts.set(member, debts.map((d) => ({ ...d, object: { ...d.object, handle: -1 } })));
    }
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

  /** Members that owe anything, with their counts. */
  summary(): Record<string, number> {
    return Object.fromEntries([...this.#debts].filter(([, d]) => d.length > 0).map(([m, d]) => [m, d.length]));
  }

  /** Removes a settled debt. */
  settle(member: string, debt: Debt): void {
    this.#set(member, this.debts(member).filter((d) => d !== debt));
  }

  /** Drops every debt about an object (its session ended, so it is gone everywhere). */
  forgetObject(handle: number): void {
    for (const [member, list] of this.#debts) {
      const kept = list.filter((d) => d.object.handle !== handle);
      if (kept.length !== list.length) this.#set(member, kept);
    }
  }

  #set(member: string, debts: Debt[]): void {
    if (debts.length === 0) this.#debts.delete(member);
    else this.#debts.set(member, debts);
    this.#persist();
  }

  #persist(): void {
    if (this.#path === undefined) return;
    const data: Record<string, Debt[]> = {};
    for (const [member, list] of this.#debts) {
      // Token objects only; and never a data object's value (it may be private data):
      // such a replica is lost on restart and the member simply lacks the object.
      const durable = list.filter((d) => d.object.token && !(d.kind === 'replica' && d.template.some((a) => a.type === pkcs11js.CKA_VALUE)));
      if (durable.length > 0) data[member] = durable;
    }
    mkdirSync(dirname(this.#path), { recursive: true });
    const tmp = `${this.#path}.tmp`;
    writeFileSync(tmp, JSON.stringify(data, encode), { mode: 0o600 });
    renameSync(tmp, this.#path);
  }
}

function sameObject(a: ObjectRef, b: ObjectRef): boolean {
  return a.handle === b.handle;
}
