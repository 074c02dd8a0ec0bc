/**
 * A change of label or id whose outcome on a member is unknown: the member owes the old
 * name back, looked for under the new one (found by the chaos run: a key renamed on a member
 * that failed under the rename, then destroyed while it was down, came back).
 */
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import type { ObjectRef } from '../../src/replication/journal-store.js';
import { oweRevertsOfUncertainRename, revertOfUncertainRename } from '../../src/replication/uncertain-change.js';
import type { Member } from '../../src/member/member.js';

const hex = (s: string) => Buffer.from(s).toString('hex');
const ref: ObjectRef = {
  handle: 7,
  name: `3/3/${hex('key-v2')}/${hex('id-1')}/T`,
  fingerprint: 'ec-point:ab',
  search: [
    { type: pkcs11js.CKA_CLASS, value: Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]) },
    { type: pkcs11js.CKA_LABEL, value: Buffer.from('key-v2') },
    { type: pkcs11js.CKA_ID, value: Buffer.from('id-1') },
  ],
  token: true,
};

describe('revertOfUncertainRename', () => {
  it('owes the old label back, on the object as named after the change', () => {
    const debt = revertOfUncertainRename(ref, [{ type: pkcs11js.CKA_LABEL, value: Buffer.from('key-v3') }]);
    expect(debt?.kind).toBe('setAttributes');
    if (debt?.kind !== 'setAttributes') return;
    expect(debt.template).toEqual([{ type: pkcs11js.CKA_LABEL, value: Buffer.from('key-v2') }]);
    expect(debt.object.name).toBe(`3/3/${hex('key-v3')}/${hex('id-1')}/T`);
    expect(debt.object.search.find((s) => s.type === pkcs11js.CKA_LABEL)?.value.toString()).toBe('key-v3');
    expect(debt.object.search.find((s) => s.type === pkcs11js.CKA_ID)?.value.toString()).toBe('id-1');
    expect(debt.object.fingerprint).toBe(ref.fingerprint);
    expect(debt.object.handle).toBe(ref.handle);
  });

  it('owes nothing for a change that leaves the name alone, or sets the same name', () => {
    expect(revertOfUncertainRename(ref, [{ type: pkcs11js.CKA_SIGN, value: false }])).toBeUndefined();
    expect(revertOfUncertainRename(ref, [{ type: pkcs11js.CKA_LABEL, value: Buffer.from('key-v2') }])).toBeUndefined();
  });

  it('is owed only by the members tried that no longer serve (they failed under the change)', async () => {
    const failed = { name: 'm-1', serving: false } as unknown as Member;
    const refused = { name: 'm-2', serving: true } as unknown as Member;
    const owed: string[] = [];
    await oweRevertsOfUncertainRename([failed, refused], ref, [{ type: pkcs11js.CKA_ID, value: Buffer.from('id-2') }], async (m, debt) => {
      owed.push(`${m.name}:${debt.kind}`);
    });
    expect(owed).toEqual(['m-1:setAttributes']);
  });
});
