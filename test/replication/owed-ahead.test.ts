/**
 * Debts recorded ahead of a deletion or an attribute change (src/replication/owed-ahead.ts):
 * a withdrawal undoes what its own call added and cancelled, and nothing another call or a
 * repair did meanwhile. The journal in memory; the same on real members and PostgreSQL in
 * key-management.test.ts and journal-shared.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { Journal, type Debt } from '../../src/replication/journal.js';
import { OwedAhead } from '../../src/replication/owed-ahead.js';
import { pkcs11js as A } from '../../src/native/pkcs11js.js';
import { ref, replica } from './journal-fixtures.js';

const KEY = ref(7, 'key');
const object = { handle: KEY.handle, identity: { name: KEY.name, fingerprint: KEY.fingerprint } };
const rename = (label: string): Debt => ({ kind: 'setAttributes', object: KEY, template: [{ type: A.CKA_LABEL, value: Buffer.from(label) }] });
const kinds = (journal: Journal) => journal.debts('m3').map((d) => (d.kind === 'setAttributes' ? `setAttributes:${String(d.template[0]?.value)}` : d.kind));

describe('OwedAhead', () => {
  it("withdraws its own change only: another call's change of the same object stays owed", async () => {
    const journal = new Journal();
    const first = await OwedAhead.record(journal, object, [{ member: 'm3', debt: rename('first') }]);
    await OwedAhead.record(journal, object, [{ member: 'm3', debt: rename('second') }]);
    await first.withdraw();
    expect(kinds(journal)).toEqual(['setAttributes:second']);
  });

  it('a refused deletion owes again the replica and the changes it had cancelled, in their order', async () => {
    const journal = new Journal();
    const copy = { ...replica(KEY.handle, 'key'), object: KEY };
    await journal.owe('m3', copy);
    await journal.owe('m3', rename('later'));
    const ahead = await OwedAhead.record(journal, object, [{ member: 'm3', debt: { kind: 'destroy', object: KEY } }]);
    expect(kinds(journal)).toEqual([]);
    await ahead.withdraw();
    expect(kinds(journal)).toEqual(['replica', 'setAttributes:later']);
  });

  it('does not owe again what a repair settled meanwhile', async () => {
    const journal = new Journal();
    const earlier = rename('earlier');
    await journal.owe('m3', earlier);
    const ahead = await OwedAhead.record(journal, object, [{ member: 'm3', debt: { kind: 'destroy', object: KEY } }]);
    expect(kinds(journal)).toEqual(['setAttributes:earlier', 'destroy']);
    // A repair applies the rename meanwhile; then the deletion is refused.
    await journal.settle('m3', earlier);
    await ahead.withdraw();
    expect(kinds(journal)).toEqual([]);
  });
});
