/** The facade's cache of attributes fixed at creation. */
import * as pkcs11js from 'pkcs11js';
import { describe, expect, it } from 'vitest';
import { AttributeCache, ulong } from '../../src/facade/attribute-cache.js';

const F = pkcs11js;

describe('AttributeCache', () => {
  it('answers only when every type asked is known, and keeps only attributes fixed at creation', () => {
    const cache = new AttributeCache();
    expect(cache.get(1, [F.CKA_CLASS])).toBeUndefined();
    const read = [
      { type: F.CKA_CLASS, value: ulong(F.CKO_SECRET_KEY) },
      { type: F.CKA_LABEL, value: Buffer.from('a') },
    ];
    expect(cache.merge(1, read)).toEqual(read);
    expect(cache.get(1, [F.CKA_CLASS])).toEqual([read[0]]);
    expect(cache.get(1, [F.CKA_CLASS, F.CKA_LABEL])).toBeUndefined(); // a label can change
    expect(cache.get(1, [])).toBeUndefined();
    cache.forget(1);
    expect(cache.get(1, [F.CKA_CLASS])).toBeUndefined();
  });

  it("answers a secret key's CKA_VALUE_LEN from its creation over a replica's 0", () => {
    const cache = new AttributeCache();
    cache.set(2, F.CKA_VALUE_LEN, ulong(32));
    expect(cache.merge(2, [{ type: F.CKA_VALUE_LEN, value: ulong(0) }])).toEqual([{ type: F.CKA_VALUE_LEN, value: ulong(32) }]);
  });

  it('hands out copies, so a caller changing a result changes no later answer', () => {
    const cache = new AttributeCache();
    cache.merge(3, [{ type: F.CKA_KEY_TYPE, value: ulong(F.CKK_AES) }]);
    cache.get(3, [F.CKA_KEY_TYPE])![0]!.value.fill(0xff);
    expect(cache.get(3, [F.CKA_KEY_TYPE])).toEqual([{ type: F.CKA_KEY_TYPE, value: ulong(F.CKK_AES) }]);
  });
});
