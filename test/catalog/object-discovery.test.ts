/**
 * ObjectDiscovery on real SoftHSM2 tokens: member handles found again by identity when a
 * member refuses the one it gave (a fault injected by FaultTransport).
 */
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { faultGroups, states } from '../helpers/fault-group.js';
import { until } from '../helpers/until.js';
import { internalsOf } from '../../src/testing.js';

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

describe('searching every member', () => {
  it('an ambiguous answer (CKR_GENERAL_ERROR) from one member does not hide what the others found; its probe keeps it in service', async () => {
    const h = await fx.openSigning();
    h.faults[0]!.failNext('findObjects', { rv: pkcs11js.CKR_GENERAL_ERROR });
    const probes = h.faults[0]!.executed('generateRandom');
    expect(await h.session.findObjects({ label: 'od-hmac' })).toEqual([h.key]);
    await until(() => h.faults[0]!.executed('generateRandom') > probes, 'the probe of member-1');
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
  });

  it('the same answer from every member goes back to the caller as it is', async () => {
    const h = await fx.openSigning();
    for (const f of h.faults) f.failNext('findObjects', { rv: pkcs11js.CKR_GENERAL_ERROR });
    await expect(h.session.findObjects({ label: 'od-hmac' })).rejects.toMatchObject({ code: 'ERR_PKCS11', ckr: 'CKR_GENERAL_ERROR' });
  });
});

describe('scanning a member', () => {
  it('an object destroyed between the search and the read of its identity is skipped, not a failure', async () => {
    const h = await fx.openSigning();
    const { discovery, members, catalog } = internalsOf(h.group);
    catalog.forgetMember(0);
    h.faults[0]!.failNext('getAttributes', { rv: pkcs11js.CKR_OBJECT_HANDLE_INVALID });
    await discovery.scanMember(members[0]!);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    // The others were linked again; the one whose read was refused is linked by the next scan.
    const linked = () => [...catalog.objects()].filter((o) => o.holders.has(0)).length;
    const first = linked();
    expect(first).toBeGreaterThan(0);
    await discovery.scanMember(members[0]!);
    expect(linked()).toBe(first + 1);
  });
});
