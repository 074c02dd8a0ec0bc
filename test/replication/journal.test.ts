import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { Journal, JournalError } from '../../src/replication/journal.js';
import type { JournalContent, JournalStore } from '../../src/replication/journal-store.js';
import { ref, replica, tracked, turn } from './journal-fixtures.js';

const A = pkcs11js;

/** A store that counts its writes; `hold` keeps each write open until `release()`; `failure` makes writes fail. */
class CountingStore implements JournalStore {
  readonly location = 'counting-store';
  readonly writes: JournalContent[] = [];
  durable: JournalContent | undefined;
  recorded: JournalContent | undefined;
  loadFailure: Error | undefined;
  failure: Error | undefined;
  hold = false;
  closed = false;
  readonly #held: (() => void)[] = [];

  async load(): Promise<JournalContent | undefined> {
    if (this.loadFailure) throw this.loadFailure;
    return this.recorded;
  }

  readonly #starts: { readonly n: number; readonly resolve: () => void }[] = [];

  async write(content: JournalContent): Promise<void> {
    this.writes.push(content);
    const held = this.hold ? new Promise<void>((resolve) => this.#held.push(resolve)) : undefined;
    for (const w of this.#starts.filter((w) => this.writes.length >= w.n)) {
      this.#starts.splice(this.#starts.indexOf(w), 1);
      w.resolve();
    }
    if (held) await held;
    if (this.failure) throw this.failure;
    this.durable = content;
  }

  /** Resolves once `n` writes have started (with `hold`, the n-th is then held open). */
  started(n: number): Promise<void> {
    if (this.writes.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#starts.push({ n, resolve }));
  }

  /** Lets the oldest held write finish. */
  release(): void {
    this.#held.shift()!();
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

const count = (content: JournalContent | undefined, member: string) => content?.debts[member]?.length ?? 0;

describe('journal group commit', () => {
  it('changes made in one turn share one write, and every read sees them at once', async () => {
    const store = new CountingStore();
    const j = new Journal(store);
    const owed = Array.from({ length: 10 }, (_, i) => j.owe('member-2', replica(i, `k${i}`)));
    // In memory before any write.
    expect(j.debts('member-2')).toHaveLength(10);
    expect(store.writes).toHaveLength(0);
    await Promise.all(owed);
    expect(store.writes).toHaveLength(1);
    expect(count(store.durable, 'member-2')).toBe(10);
  });

  it('changes made while a write is in progress wait for it and coalesce into the next one', async () => {
    const store = new CountingStore();
    store.hold = true;
    const j = new Journal(store);
    const first = tracked(j.owe('member-2', replica(0, 'k0')));
    await store.started(1);
    const later = Array.from({ length: 20 }, (_, i) => j.owe(i % 2 === 0 ? 'member-2' : 'member-3', replica(i + 1, `k${i + 1}`)));
    const laterState = later.map(tracked);
    await turn();
    // One writer: nothing else started while the first write is open.
    expect(store.writes).toHaveLength(1);
    expect(first.settled).toBe(false);
    store.release();
    await store.started(2);
    expect(first.settled).toBe(true);
    // The first write held only the first change: the later ones are not durable yet.
    expect(count(store.durable, 'member-2')).toBe(1);
    expect(laterState.some((s) => s.settled)).toBe(false);
    store.release();
    await Promise.all(later);
    expect(store.writes).toHaveLength(2);
    expect(count(store.durable, 'member-2')).toBe(11);
    expect(count(store.durable, 'member-3')).toBe(10);
  });

  it('a change resolves only once a write that holds it has finished', async () => {
    const store = new CountingStore();
    store.hold = true;
    const j = new Journal(store);
    const entry = j.markTentative('member-1', [[{ type: A.CKA_LABEL, value: Buffer.from('k') }]]);
    const state = tracked(entry);
    await store.started(1);
    await turn();
    expect(state.settled).toBe(false);
    expect(j.tentatives('member-1')).toHaveLength(1);
    store.release();
    expect(await entry).toBe(j.tentatives('member-1')[0]);
    expect(store.durable?.tentative['member-1']).toHaveLength(1);
  });

  it('a write that fails rejects every waiting change with ERR_JOURNAL; the change stays and the next write or flush carries it', async () => {
    const store = new CountingStore();
    store.failure = Object.assign(new Error('no space left'), { code: 'ENOSPC' });
    const j = new Journal(store);
    const owed = [j.owe('member-2', replica(1, 'a')), j.owe('member-3', replica(2, 'b'))];
    for (const p of owed) {
      const error = await p.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(JournalError);
      expect(error).toMatchObject({ code: 'ERR_JOURNAL', fault: 'io', path: 'counting-store' });
    }
    // A caller that does not wait, alone in its write and in a derived promise, must not
    // crash the process (vitest fails the run on an unhandled rejection).
    void j.owe('member-3', replica(3, 'c'));
    await store.started(2);
    void j.markTentative('member-3', []);
    await store.started(3);
    await turn();
    expect(store.durable).toBeUndefined();
    expect(j.summary()).toEqual({ 'member-2': 1, 'member-3': 3 });
    await expect(j.flush()).rejects.toBeInstanceOf(JournalError);
    store.failure = undefined;
    await j.flush();
    expect(store.durable?.debts).toMatchObject({ 'member-2': [{ kind: 'replica' }], 'member-3': [{ kind: 'replica' }, { kind: 'replica' }] });
    // Nothing left unsaved: flush writes nothing more.
    const writes = store.writes.length;
    await j.flush();
    expect(store.writes).toHaveLength(writes);
  });

  it('what never reaches the store costs no write: session objects, a data object replica', async () => {
    const store = new CountingStore();
    const j = new Journal(store);
    await j.owe('member-2', replica(1, 'session', false));
    await j.owe('member-2', { kind: 'replica', object: ref(2, 'data'), wrapped: undefined, template: [{ type: A.CKA_VALUE, value: randomBytes(8) }] });
    expect(await j.settle('member-2', j.debts('member-2')[0]!)).toBe(true);
    await j.forgetObject(2);
    expect(store.writes).toHaveLength(0);
    await j.owe('member-2', replica(3, 'token'));
    expect(store.writes).toHaveLength(1);
  });

  it('settle resolves to whether it removed the debt', async () => {
    const j = new Journal(new CountingStore());
    const debt = replica(1, 'a');
    await j.owe('member-2', debt);
    expect(await j.settle('member-2', debt)).toBe(true);
    expect(await j.settle('member-2', debt)).toBe(false);
    expect(j.summary()).toEqual({});
  });

  it('a deletion cancels a replica not yet made; a later debt about the object is kept', async () => {
    const store = new CountingStore();
    const j = new Journal(store);
    await j.owe('member-2', replica(1, 'a'));
    await j.owe('member-2', { kind: 'destroy', object: ref(1, 'a') });
    expect(j.debts('member-2')).toEqual([]);
    expect(store.durable?.debts).toEqual({});
    await j.owe('member-2', { kind: 'destroy', object: ref(1, 'a') });
    expect(j.owes('member-2', { handle: 1, identity: { name: ref(1, 'a').name, fingerprint: ref(1, 'a').fingerprint } })).toBe(true);
  });

  it('a deletion after a copy whose outcome is unknown (the member failed taking it) stays owed: the copy may exist', async () => {
    const store = new CountingStore();
    const j = new Journal(store);
    await j.owe('member-2', { ...replica(1, 'a'), uncertain: true });
    const destroy = { kind: 'destroy' as const, object: ref(1, 'a') };
    await j.owe('member-2', destroy);
    expect(j.debts('member-2')).toEqual([{ ...destroy, leftover: true }]);
    expect(store.durable?.debts['member-2']).toHaveLength(1);
    // Read back from the file, the flag holds.
    const reopened = new Journal(Object.assign(new CountingStore(), { recorded: { debts: { 'member-2': [{ ...replica(7, 'b'), uncertain: true as const }] }, tentative: {} } }));
    await reopened.load();
    await reopened.owe('member-2', { kind: 'destroy', object: { ...ref(0, 'b'), handle: -1 } });
    expect(reopened.debts('member-2').map((d) => d.kind)).toEqual(['destroy']);
  });

  it('a deletion after an uncertain copy and a rename looks for the copy under the name it was made under', async () => {
    const j = new Journal(new CountingStore());
    await j.owe('member-2', { ...replica(1, 'a'), uncertain: true });
    await j.owe('member-2', { kind: 'setAttributes', object: ref(1, 'a'), template: [] });
    await j.owe('member-2', { kind: 'destroy', object: ref(1, 'b') });
    // The rename never reached the copy (it went with the replica): the copy, if made, is still 'a'.
    expect(j.debts('member-2')).toEqual([{ kind: 'destroy', object: ref(1, 'a'), leftover: true }]);
  });

  it('a deletion keeps the attribute changes the member missed before it (it still shows the old name); debts read back are told apart by identity', async () => {
    const store = new CountingStore();
    const j = new Journal(store);
    const rename = { kind: 'setAttributes' as const, object: ref(1, 'v0'), template: [{ type: A.CKA_LABEL, value: Buffer.from('v1') }] };
    await j.owe('member-2', rename);
    await j.owe('member-2', { kind: 'destroy', object: ref(1, 'v1') });
    expect(j.debts('member-2').map((d) => [d.kind, d.object.name])).toEqual([
      ['setAttributes', ref(1, 'v0').name],
      ['destroy', ref(1, 'v1').name],
    ]);
    expect(store.durable?.debts['member-2']).toHaveLength(2);
    // After a restart every debt has handle -1: a deletion of one object cancels nothing of another.
    const reopened = new Journal(Object.assign(new CountingStore(), { recorded: { debts: { 'member-2': [replica(7, 'a'), replica(8, 'b')] }, tentative: {} } }));
    await reopened.load();
    await reopened.owe('member-2', { kind: 'destroy', object: { ...ref(0, 'a'), handle: -1 } });
    expect(reopened.debts('member-2').map((d) => d.object.name)).toEqual([ref(0, 'b').name]);
  });

  it('never writes over a store before reading it: what was recorded comes first, as debts matched by identity', async () => {
    const store = new CountingStore();
    store.recorded = { debts: { 'member-2': [replica(7, 'old')] }, tentative: {} };
    const j = new Journal(store);
    // load() not called: the first write reads the store first.
    await j.owe('member-2', replica(8, 'new'));
    expect(j.debts('member-2').map((d) => d.object.handle)).toEqual([-1, 8]);
    expect(store.durable?.debts['member-2']?.map((d) => d.object.name)).toEqual([ref(0, 'old').name, ref(0, 'new').name]);
  });

  it('a store that cannot be read is never written: changes reject with its error', async () => {
    const store = new CountingStore();
    store.loadFailure = new JournalError('counting-store', 'corrupt', 'checksum mismatch');
    const j = new Journal(store);
    await expect(j.load()).rejects.toMatchObject({ fault: 'corrupt' });
    await expect(j.owe('member-2', replica(1, 'a'))).rejects.toMatchObject({ fault: 'corrupt' });
    expect(store.writes).toHaveLength(0);
  });

  it('close waits for the last write, then closes the store; later changes stay in memory and reject with ERR_CLOSED', async () => {
    const store = new CountingStore();
    store.hold = true;
    const j = new Journal(store);
    const owed = j.owe('member-2', replica(1, 'a'));
    await store.started(1);
    const closed = tracked(j.close());
    await turn();
    expect(closed.settled).toBe(false);
    store.release();
    await owed;
    await j.close();
    expect(store.closed).toBe(true);
    await expect(j.owe('member-3', replica(2, 'b'))).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    expect(j.summary()).toEqual({ 'member-2': 1, 'member-3': 1 });
    expect(store.writes).toHaveLength(1);
  });

  it('close writes a change whose write failed, and reports when it still cannot', async () => {
    const store = new CountingStore();
    store.failure = new Error('EIO');
    const j = new Journal(store);
    await expect(j.owe('member-2', replica(1, 'a'))).rejects.toBeInstanceOf(JournalError);
    await expect(j.close()).rejects.toBeInstanceOf(JournalError);
    expect(store.closed).toBe(true);

    const healed = new CountingStore();
    healed.failure = new Error('EIO');
    const k = new Journal(healed);
    await expect(k.owe('member-2', replica(1, 'a'))).rejects.toBeInstanceOf(JournalError);
    healed.failure = undefined;
    await k.close();
    expect(count(healed.durable, 'member-2')).toBe(1);
  });

  it('in memory (no store): every change resolves at once, flush and close too', async () => {
    const j = new Journal();
    await j.load();
    await j.owe('member-2', replica(1, 'a'));
    expect((await j.markTentative('member-2', [])).searches).toEqual([]);
    await j.flush();
    await j.close();
    expect(j.summary()).toEqual({ 'member-2': 2 });
  });
});
