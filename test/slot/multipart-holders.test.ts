/**
 * Multi-part operations when the catalog has forgotten holders of their key (a logout
 * forgets every private object's links; a recovering member's scan links only its own):
 * the Init, and a replay after the pinned member fails, look for unlinked holders once
 * before giving up, as the router does. Found by the chaos run (seed 2: `no serving member
 * can run C_SignInit`). Real SoftHSM2 tokens in process; the faults are injected.
 */
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { internalsOf } from '../../src/testing.js';
import { faultGroups, states } from '../helpers/fault-group.js';

const fx = faultGroups({ prefix: 'mh' });
const DATA = Buffer.from('failover');

describe('multi-part operations find unlinked holders of their key', () => {
  it('an Init whose only linked holder fails under it runs on a member that holds the key unlinked', async () => {
    const h = await fx.openSigning();
    const object = internalsOf(h.group).catalog.get(h.key)!;
    internalsOf(h.group).catalog.unlink(object, 1);
    internalsOf(h.group).catalog.unlink(object, 2);
    h.faults[0]!.failNext('signInit', { rv: pkcs11js.CKR_TOKEN_NOT_PRESENT });
    await h.session.signInit('SHA256_HMAC', h.key);
    await h.session.signUpdate(DATA);
    expect(await h.session.signFinal()).toEqual(h.expectedMac);
    expect(states(h.group)[0]).toBe('failed');
    expect([...object.holders.keys()].sort()).toEqual([1, 2]);
  });

  it('an operation whose member fails after its first part is replayed on a member that holds the key unlinked', async () => {
    const h = await fx.openSigning();
    const object = internalsOf(h.group).catalog.get(h.key)!;
    internalsOf(h.group).catalog.unlink(object, 1);
    internalsOf(h.group).catalog.unlink(object, 2);
    await h.session.signInit('SHA256_HMAC', h.key);
    await h.session.signUpdate(DATA.subarray(0, 3));
    h.faults[0]!.failNext('signUpdate', { rv: pkcs11js.CKR_DEVICE_REMOVED });
    await h.session.signUpdate(DATA.subarray(3));
    expect(await h.session.signFinal()).toEqual(h.expectedMac);
    expect(states(h.group)[0]).toBe('failed');
  });
});
