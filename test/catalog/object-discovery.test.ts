/**
 * ObjectDiscovery on real SoftHSM2 tokens: member handles found again by identity when a
 * member refuses the one it gave (a fault injected by FaultTransport).
 */
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { faultGroups, states } from '../helpers/fault-group.js';

const fx = faultGroups({ prefix: 'od' });

describe('finding holders again by identity', () => {
  it('a refused (stale) member handle is found again by identity once, and the call succeeds', async () => {
    const h = await fx.openSigning();
    h.faults[0]!.failNext('sign', { rv: pkcs11js.CKR_KEY_HANDLE_INVALID });
    const searches = h.faults[0]!.executed('findObjects');
    expect(await h.sign()).toEqual(h.expectedMac);
    expect(h.faults[0]!.executed('findObjects')).toBeGreaterThan(searches);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    expect(h.group.describeObject(h.key)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
  });
});
