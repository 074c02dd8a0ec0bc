import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/pkcs11/pkcs11js.js';
import { JOURNAL_FORMAT, JOURNAL_VERSION, Journal, JournalError, type Debt, type ObjectRef } from '../../src/replication/journal.js';

const A = pkcs11js;

function ref(handle: number, label: string, token = true): ObjectRef {
  return {
    handle,
    name: `4/31/${Buffer.from(label).toString('hex')}/-/${token ? 'T' : 'S'}`,
    fingerprint: `domain-wrap:${'ab'.repeat(16)}`,
    search: [
      { type: A.CKA_LABEL, value: Buffer.from(label) },
      { type: A.CKA_TOKEN, value: Buffer.from([token ? 1 : 0]) },
    ],
    token,
  };
}

const replica = (handle: number, label: string): Debt => ({
  kind: 'replica',
  object: ref(handle, label),
  wrapped: randomBytes(40),
  template: [
    { type: A.CKA_CLASS, value: Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]) },
    { type: A.CKA_LABEL, value: Buffer.from(label) },
    { type: A.CKA_ENCRYPT, value: Buffer.from([1]) },
  ],
});

describe('journal file', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'journal-'));
    path = join(dir, 'journal.json');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('round trip: debts and tentative entries come back, by identity (handles of an earlier process mean nothing)', () => {
    const j = new Journal(path);
    const r = replica(7, 'a');
    j.owe('member-2', r);
    j.owe('member-3', { kind: 'destroy', object: ref(8, 'b') });
    j.owe('member-3', { kind: 'setAttributes', object: ref(9, 'c'), template: [{ type: A.CKA_LABEL, value: 'c2' }] });
    j.markTentative('member-1', [[{ type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_LABEL, value: Buffer.from('k') }, { type: A.CKA_TOKEN, value: true }]]);

    const header = JSON.parse(readFileSync(path, 'utf8').split('\n')[0]!);
    expect(header).toMatchObject({ format: JOURNAL_FORMAT, version: JOURNAL_VERSION });

    const back = new Journal(path);
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
    back.settle('member-2', back.debts('member-2')[0]!);
    back.clearTentative('member-1', back.tentatives('member-1')[0]!);
    expect(new Journal(path).summary()).toEqual({ 'member-3': 2 });
  });

  it('detects a file changed on disk (checksum) and refuses it with ERR_JOURNAL, naming the good previous copy', () => {
    const j = new Journal(path);
    j.owe('member-2', replica(1, 'a'));
    j.owe('member-2', replica(2, 'b'));
    const text = readFileSync(path, 'utf8');
    // One character of the body changed: still valid JSON, but not what was written.
    writeFileSync(path, text.replace('member-2', 'member-9'));
    const error = (() => {
      try {
        new Journal(path);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(JournalError);
    expect(error).toMatchObject({ code: 'ERR_JOURNAL', fault: 'corrupt', previous: `${path}.prev` });
    expect((error as Error).message).toMatch(/checksum mismatch/);
  });

  it('detects a truncated file (a torn write) and can go back to the previous copy when told to', () => {
    const j = new Journal(path);
    j.owe('member-2', replica(1, 'a'));
    j.owe('member-2', replica(2, 'b'));
    truncateSync(path, readFileSync(path).length - 30);
    expect(() => new Journal(path)).toThrow(expect.objectContaining({ code: 'ERR_JOURNAL', fault: 'truncated' }));
    // The previous copy is one change behind: only on request, and it says so.
    const back = new Journal(path, { onCorrupt: 'usePrevious' });
    expect(back.recoveredFrom).toBe(`${path}.prev`);
    expect(back.summary()).toEqual({ 'member-2': 1 });
    expect(existsSync(`${path}.corrupt`)).toBe(true);
    // The current file was written again from it and verifies.
    expect(new Journal(path).summary()).toEqual({ 'member-2': 1 });
  });

  it('an empty file, a file cut inside its header, or a missing file with a previous copy beside it are refused too', () => {
    const j = new Journal(path);
    j.owe('member-2', replica(1, 'a'));
    j.owe('member-2', replica(2, 'b'));
    const text = readFileSync(path, 'utf8');
    writeFileSync(path, '');
    expect(() => new Journal(path)).toThrow(expect.objectContaining({ fault: 'truncated' }));
    writeFileSync(path, text.slice(0, 20));
    expect(() => new Journal(path)).toThrow(expect.objectContaining({ fault: 'corrupt' }));
    rmSync(path);
    expect(() => new Journal(path)).toThrow(expect.objectContaining({ fault: 'missing' }));
  });

  it('a file from a newer version is refused, not misread', () => {
    new Journal(path).owe('member-2', replica(1, 'a'));
    const [header, body] = readFileSync(path, 'utf8').split('\n');
    writeFileSync(path, `${JSON.stringify({ ...JSON.parse(header!), version: JOURNAL_VERSION + 1 })}\n${body}`);
    expect(() => new Journal(path)).toThrow(expect.objectContaining({ fault: 'version' }));
  });

  it('ignores a leftover tmp file (a write cut before its rename) and writes over it later', () => {
    const j = new Journal(path);
    j.owe('member-2', replica(1, 'a'));
    writeFileSync(`${path}.tmp`, '{"format":"pkcs11-ha-journal","version":2,"bytes":99999,"sha');
    const back = new Journal(path);
    expect(back.summary()).toEqual({ 'member-2': 1 });
    back.owe('member-3', replica(2, 'b'));
    expect(existsSync(`${path}.tmp`)).toBe(false);
    expect(new Journal(path).summary()).toEqual({ 'member-2': 1, 'member-3': 1 });
  });

  it('reads a version 1 file (no header) and writes version 2 from then on', () => {
    const v1 = { 'member-2': [{ kind: 'destroy', object: { handle: 3, name: 'n', search: [{ type: A.CKA_LABEL, value: { __b64: Buffer.from('x').toString('base64') } }], token: true } }] };
    writeFileSync(path, JSON.stringify(v1));
    const j = new Journal(path);
    expect(j.debts('member-2')).toEqual([{ kind: 'destroy', object: { handle: -1, name: 'n', search: [{ type: A.CKA_LABEL, value: Buffer.from('x') }], token: true } }]);
    j.owe('member-3', replica(1, 'a'));
    expect(JSON.parse(readFileSync(path, 'utf8').split('\n')[0]!).version).toBe(JOURNAL_VERSION);
  });

  it('never writes a secret attribute: an attribute change is written without it (marked redacted), a data object replica not at all', () => {
    const secret = randomBytes(24);
    const j = new Journal(path);
    j.owe('member-2', {
      kind: 'setAttributes',
      object: ref(1, 'd'),
      template: [
        { type: A.CKA_LABEL, value: 'renamed' },
        { type: A.CKA_VALUE, value: secret },
        { type: A.CKA_PRIVATE_EXPONENT, value: secret },
      ],
    });
    j.owe('member-2', { kind: 'replica', object: ref(2, 'data'), wrapped: undefined, template: [{ type: A.CKA_CLASS, value: A.CKO_DATA }, { type: A.CKA_VALUE, value: secret }] });
    // Session objects never reach the file.
    j.owe('member-2', replica(3, 'session'));
    j.owe('member-2', { ...replica(4, 'session'), object: ref(4, 'session', false) });
    const text = readFileSync(path, 'utf8');
    expect(text.includes(secret.toString('base64')) || text.includes(secret.toString('hex'))).toBe(false);
    // In memory the full change is kept (this process can still replay it).
    expect(j.debts('member-2')).toHaveLength(4);
    const back = new Journal(path);
    const kinds = back.debts('member-2').map((d) => d.kind);
    expect(kinds).toEqual(['setAttributes', 'replica']);
    const change = back.debts('member-2')[0] as Extract<Debt, { kind: 'setAttributes' }>;
    expect(change.template).toEqual([{ type: A.CKA_LABEL, value: 'renamed' }]);
    expect(change.redacted).toEqual([A.CKA_VALUE, A.CKA_PRIVATE_EXPONENT]);
  });

  it('keeps the previous good copy beside the current one', () => {
    const j = new Journal(path);
    j.owe('member-2', replica(1, 'a'));
    expect(existsSync(`${path}.prev`)).toBe(false);
    j.owe('member-2', replica(2, 'b'));
    expect(new Journal(`${path}.prev`).summary()).toEqual({ 'member-2': 1 });
    expect(new Journal(path).summary()).toEqual({ 'member-2': 2 });
  });
});
