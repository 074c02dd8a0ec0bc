import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { FileJournalStore, type JournalFileSystem } from '../../src/replication/journal-file.js';
import { JOURNAL_FORMAT, JOURNAL_VERSION, Journal, JournalError, type Debt } from '../../src/replication/journal.js';
import { ref, replica, tracked, turn } from './journal-fixtures.js';

const A = pkcs11js;

/** Real file operations; counts the renames that install a new journal file, and can hold or fail them. */
function countingFs(path: string) {
  const held: (() => void)[] = [];
  const waiting: (() => void)[] = [];
  const seam = {
    installs: 0,
    hold: false,
    failOpen: undefined as Error | undefined,
    held,
    /** Resolves once a rename is held (at once when one is). */
    holding: (): Promise<void> => (held.length > 0 ? Promise.resolve() : new Promise<void>((resolve) => waiting.push(resolve))),
    fs: {
      ...fsp,
      open: async (file: string, flags: string, mode?: number) => {
        if (seam.failOpen && flags === 'w') throw seam.failOpen;
        return fsp.open(file, flags, mode);
      },
      rename: async (from: string, to: string) => {
        if (to === path) {
          seam.installs++;
          if (seam.hold) {
            const release = new Promise<void>((resolve) => held.push(resolve));
            for (const w of waiting.splice(0)) w();
            await release;
          }
        }
        return fsp.rename(from, to);
      },
    } satisfies JournalFileSystem,
  };
  return seam;
}

describe('journal file', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'journal-'));
    path = join(dir, 'journal.json');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('round trip: debts and tentative entries come back after a restart, by identity (handles of an earlier process mean nothing)', async () => {
    const j = await Journal.open(path);
    const r = replica(7, 'a');
    await Promise.all([
      j.owe('member-2', r),
      j.owe('member-3', { kind: 'destroy', object: ref(8, 'b') }),
      j.owe('member-3', { kind: 'setAttributes', object: ref(9, 'c'), template: [{ type: A.CKA_LABEL, value: 'c2' }] }),
      j.markTentative('member-1', [[{ type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_LABEL, value: Buffer.from('k') }, { type: A.CKA_TOKEN, value: true }]]),
    ]);

    const header = JSON.parse(readFileSync(path, 'utf8').split('\n')[0]!);
    expect(header).toMatchObject({ format: JOURNAL_FORMAT, version: JOURNAL_VERSION });

    const back = await Journal.open(path);
    expect(back.summary()).toEqual({ 'member-1': 1, 'member-2': 1, 'member-3': 2 });
    const [d] = back.debts('member-2');
    expect(d).toMatchObject({ kind: 'replica', object: { handle: -1, name: r.object.name, fingerprint: r.object.fingerprint } });
    expect((d as Extract<Debt, { kind: 'replica' }>).wrapped).toEqual((r as Extract<Debt, { kind: 'replica' }>).wrapped);
    expect(back.debts('member-3').map((x) => x.kind)).toEqual(['destroy', 'setAttributes']);
    expect(back.tentatives('member-1')[0]!.searches[0]).toEqual([
      { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY },
      { type: A.CKA_LABEL, value: Buffer.from('k') },
      { type: A.CKA_TOKEN, value: true },
    ]);
    expect(back.owes('member-3', { handle: 99, identity: { name: ref(0, 'b').name, fingerprint: ref(0, 'b').fingerprint } })).toBe(true);

    // Settling writes through too.
    await back.settle('member-2', back.debts('member-2')[0]!);
    await back.clearTentative('member-1', back.tentatives('member-1')[0]!);
    await back.forgetMember('member-3');
    expect((await Journal.open(path)).summary()).toEqual({});
  });

  it('group commit: 30 concurrent changes take two file writes, the second holding all that came during the first', async () => {
    const seam = countingFs(path);
    seam.hold = true;
    const j = new Journal(new FileJournalStore(path, { fs: seam.fs }));
    const first = j.owe('member-2', replica(0, 'k0'));
    await seam.holding();
    const rest = Array.from({ length: 29 }, (_, i) => j.owe('member-2', replica(i + 1, `k${i + 1}`)));
    await turn();
    expect(seam.installs).toBe(1);
    seam.held.shift()!();
    await first;
    // Durable: a restart sees it, and only it (the others are in the next write).
    expect((await Journal.open(path)).summary()).toEqual({ 'member-2': 1 });
    await seam.holding();
    seam.held.shift()!();
    await Promise.all(rest);
    expect(seam.installs).toBe(2);
    expect((await Journal.open(path)).summary()).toEqual({ 'member-2': 30 });
  });

  it('a change resolves only after its file is in place', async () => {
    const seam = countingFs(path);
    seam.hold = true;
    const j = new Journal(new FileJournalStore(path, { fs: seam.fs }));
    const owed = j.owe('member-2', replica(1, 'a'));
    const state = tracked(owed);
    await seam.holding();
    await turn();
    expect(state.settled).toBe(false);
    expect(existsSync(path)).toBe(false);
    seam.held.shift()!();
    await owed;
    expect((await Journal.open(path)).summary()).toEqual({ 'member-2': 1 });
  });

  it('a write that fails rejects with ERR_JOURNAL (io), leaves the file as it was, and the next write carries the change', async () => {
    const seam = countingFs(path);
    const j = new Journal(new FileJournalStore(path, { fs: seam.fs }));
    await j.owe('member-2', replica(1, 'a'));
    seam.failOpen = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    const error = await j.owe('member-3', replica(2, 'b')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JournalError);
    expect(error).toMatchObject({ code: 'ERR_JOURNAL', fault: 'io', path });
    expect((error as Error).message).toMatch(/cannot be written: ENOSPC/);
    expect((await Journal.open(path)).summary()).toEqual({ 'member-2': 1 });
    seam.failOpen = undefined;
    await j.close();
    expect((await Journal.open(path)).summary()).toEqual({ 'member-2': 1, 'member-3': 1 });
  });

  it('detects a file changed on disk (checksum) and refuses it with ERR_JOURNAL, naming the good previous copy', async () => {
    const j = await Journal.open(path);
    await j.owe('member-2', replica(1, 'a'));
    await j.owe('member-2', replica(2, 'b'));
    const text = readFileSync(path, 'utf8');
    // One character of the body changed: still valid JSON, but not what was written.
    writeFileSync(path, text.replace('member-2', 'member-9'));
    const error = await Journal.open(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JournalError);
    expect(error).toMatchObject({ code: 'ERR_JOURNAL', fault: 'corrupt', previous: `${path}.prev` });
    expect((error as Error).message).toMatch(/checksum mismatch/);
    // Nothing is written over a file that was refused.
    const refused = new Journal(path);
    await expect(refused.owe('member-3', replica(3, 'c'))).rejects.toMatchObject({ fault: 'corrupt' });
    expect(readFileSync(path, 'utf8')).toBe(text.replace('member-2', 'member-9'));
  });

  it('detects a truncated file (a torn write) and can go back to the previous copy when told to', async () => {
    const j = await Journal.open(path);
    await j.owe('member-2', replica(1, 'a'));
    await j.owe('member-2', replica(2, 'b'));
    truncateSync(path, readFileSync(path).length - 30);
    await expect(Journal.open(path)).rejects.toMatchObject({ code: 'ERR_JOURNAL', fault: 'truncated' });
    // The previous copy is one change behind: only on request, and it says so.
    const back = await Journal.open(path, { onCorrupt: 'usePrevious' });
    expect(back.recoveredFrom).toBe(`${path}.prev`);
    expect(back.summary()).toEqual({ 'member-2': 1 });
    expect(existsSync(`${path}.corrupt`)).toBe(true);
    // The current file was written again from it and verifies.
    expect((await Journal.open(path)).summary()).toEqual({ 'member-2': 1 });
  });

  it('an empty file, a file cut inside its header, or a missing file with a previous copy beside it are refused too', async () => {
    const j = await Journal.open(path);
    await j.owe('member-2', replica(1, 'a'));
    await j.owe('member-2', replica(2, 'b'));
    const text = readFileSync(path, 'utf8');
    writeFileSync(path, '');
    await expect(Journal.open(path)).rejects.toMatchObject({ fault: 'truncated' });
    writeFileSync(path, text.slice(0, 20));
    await expect(Journal.open(path)).rejects.toMatchObject({ fault: 'corrupt' });
    rmSync(path);
    await expect(Journal.open(path)).rejects.toMatchObject({ fault: 'missing' });
  });

  it('a file from a newer version is refused, not misread', async () => {
    await (await Journal.open(path)).owe('member-2', replica(1, 'a'));
    const [header, body] = readFileSync(path, 'utf8').split('\n');
    writeFileSync(path, `${JSON.stringify({ ...JSON.parse(header!), version: JOURNAL_VERSION + 1 })}\n${body}`);
    await expect(Journal.open(path)).rejects.toMatchObject({ fault: 'version' });
  });

  it('ignores a leftover tmp file (a write cut before its rename) and writes over it later', async () => {
    const j = await Journal.open(path);
    await j.owe('member-2', replica(1, 'a'));
    writeFileSync(`${path}.tmp`, '{"format":"pkcs11-ha-journal","version":2,"bytes":99999,"sha');
    const back = await Journal.open(path);
    expect(back.summary()).toEqual({ 'member-2': 1 });
    await back.owe('member-3', replica(2, 'b'));
    expect(existsSync(`${path}.tmp`)).toBe(false);
    expect((await Journal.open(path)).summary()).toEqual({ 'member-2': 1, 'member-3': 1 });
  });

  it('reads a version 1 file (no header) and writes version 2 from then on', async () => {
    const v1 = { 'member-2': [{ kind: 'destroy', object: { handle: 3, name: 'n', search: [{ type: A.CKA_LABEL, value: { __b64: Buffer.from('x').toString('base64') } }], token: true } }] };
    writeFileSync(path, JSON.stringify(v1));
    const j = await Journal.open(path);
    expect(j.debts('member-2')).toEqual([{ kind: 'destroy', object: { handle: -1, name: 'n', search: [{ type: A.CKA_LABEL, value: Buffer.from('x') }], token: true } }]);
    await j.owe('member-3', replica(1, 'a'));
    expect(JSON.parse(readFileSync(path, 'utf8').split('\n')[0]!).version).toBe(JOURNAL_VERSION);
    expect((await Journal.open(path)).summary()).toEqual({ 'member-2': 1, 'member-3': 1 });
  });

  it('never writes a secret attribute: an attribute change is written without it (marked redacted), a data object replica not at all', async () => {
    const secret = randomBytes(24);
    const j = await Journal.open(path);
    await j.owe('member-2', {
      kind: 'setAttributes',
      object: ref(1, 'd'),
      template: [
        { type: A.CKA_LABEL, value: 'renamed' },
        { type: A.CKA_VALUE, value: secret },
        { type: A.CKA_PRIVATE_EXPONENT, value: secret },
      ],
    });
    await j.owe('member-2', { kind: 'replica', object: ref(2, 'data'), wrapped: undefined, template: [{ type: A.CKA_CLASS, value: A.CKO_DATA }, { type: A.CKA_VALUE, value: secret }] });
    await j.owe('member-2', replica(3, 'session'));
    // Session objects never reach the file.
    await j.owe('member-2', replica(4, 'session', false));
    const text = readFileSync(path, 'utf8');
    expect(text.includes(secret.toString('base64')) || text.includes(secret.toString('hex'))).toBe(false);
    // In memory the full change is kept (this process can still replay it).
    expect(j.debts('member-2')).toHaveLength(4);
    const back = await Journal.open(path);
    const kinds = back.debts('member-2').map((d) => d.kind);
    expect(kinds).toEqual(['setAttributes', 'replica']);
    const change = back.debts('member-2')[0] as Extract<Debt, { kind: 'setAttributes' }>;
    expect(change.template).toEqual([{ type: A.CKA_LABEL, value: 'renamed' }]);
    expect(change.redacted).toEqual([A.CKA_VALUE, A.CKA_PRIVATE_EXPONENT]);
  });

  it('keeps the previous good copy beside the current one', async () => {
    const j = await Journal.open(path);
    await j.owe('member-2', replica(1, 'a'));
    expect(existsSync(`${path}.prev`)).toBe(false);
    await j.owe('member-2', replica(2, 'b'));
    expect((await Journal.open(`${path}.prev`)).summary()).toEqual({ 'member-2': 1 });
    expect((await Journal.open(path)).summary()).toEqual({ 'member-2': 2 });
  });
});
