/**
 * Failover through the whole group on real SoftHSM2 tokens, with faults a real token cannot
 * give on demand (a hang, a dropped connection) injected by FaultTransport, and all time
 * driven by a fake clock. Member host processes killed for real are in
 * test/group/host-failover.test.ts; recovery, login, standby promotion and identity have
 * the test files of their own modules.
 */
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { DEADLINE_MS, faultGroups, states } from '../helpers/fault-group.js';
import { until } from '../helpers/until.js';

const fx = faultGroups({ prefix: 'f' });

describe('deadlines', () => {
  it('a hung command fails its member at the deadline and runs again elsewhere: the caller sees its answer', async () => {
    const h = await fx.openSigning();
    h.faults[0]!.failNext('sign', 'hang');
    const call = h.sign();
    await until(() => h.faults[0]!.hanging === 1, 'the command to hang');
    h.clock.advance(DEADLINE_MS - 1);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    h.clock.advance(1);
    expect(states(h.group)).toEqual(['failed', 'active', 'active']);
    expect(await call).toEqual(h.expectedMac);
    const failed = h.group.status().members[0]!.state;
    expect(failed.kind === 'failed' && failed.reason).toMatch(/no answer for 1000 ms/);
    expect(h.events).toContainEqual({ name: 'memberFailed', member: 'member-1' });
  });

  it('heartbeats keep a long command alive past the deadline, but not past the ceiling', async () => {
    const h = await fx.openSigning();
    h.faults[0]!.failNext('sign', 'hang');
    const call = h.sign();
    await until(() => h.faults[0]!.hanging === 1, 'the command to hang');
    for (let t = 0; t < 11; t++) {
      h.clock.advance(DEADLINE_MS - 100);
      h.faults[0]!.heartbeat();
    }
    expect(states(h.group)[0]).toBe('active'); // 9.9 s pending, alive
    h.clock.advance(100); // the ceiling: 10 s
    expect(states(h.group)[0]).toBe('failed');
    const failed = h.group.status().members[0]!.state;
    expect(failed.kind === 'failed' && failed.reason).toMatch(/past the ceiling/);
    expect(await call).toEqual(h.expectedMac);
  });

  it('a hung command released by a heartbeat-less host is not failed over before the deadline', async () => {
    const h = await fx.openSigning();
    h.faults[0]!.failNext('sign', 'hang');
    const call = h.sign();
    await until(() => h.faults[0]!.hanging === 1, 'the command to hang');
    h.clock.advance(DEADLINE_MS / 2);
    h.faults[0]!.release();
    expect(await call).toEqual(h.expectedMac);
    h.clock.advance(DEADLINE_MS * 5);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
  });
});

describe('ambiguous return codes', () => {
  it('CKR_GENERAL_ERROR goes back to the caller and the member stays in service after a probe answers', async () => {
    const h = await fx.openSigning();
    h.faults[0]!.failNext('sign', { rv: pkcs11js.CKR_GENERAL_ERROR });
    const probesBefore = h.faults[0]!.executed('generateRandom');
    await expect(h.sign()).rejects.toMatchObject({ code: 'ERR_PKCS11', ckr: 'CKR_GENERAL_ERROR' });
    expect(h.faults[0]!.executed('generateRandom')).toBe(probesBefore + 1);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
  });

  it('CKR_GENERAL_ERROR followed by a failing probe fails the member and the command runs elsewhere', async () => {
    const h = await fx.openSigning();
    h.faults[0]!.failNext('sign', { rv: pkcs11js.CKR_GENERAL_ERROR });
    h.faults[0]!.failNext('generateRandom', { rv: pkcs11js.CKR_DEVICE_ERROR });
    expect(await h.sign()).toEqual(h.expectedMac);
    expect(states(h.group)).toEqual(['failed', 'active', 'active']);
  });

  it('CKR_GENERAL_ERROR to the probe as well (a module answering every call so) fails the member and the command runs elsewhere', async () => {
    const h = await fx.openSigning();
    h.faults[0]!.failNext('sign', { rv: pkcs11js.CKR_GENERAL_ERROR });
    h.faults[0]!.failNext('generateRandom', { rv: pkcs11js.CKR_GENERAL_ERROR });
    expect(await h.sign()).toEqual(h.expectedMac);
    expect(states(h.group)).toEqual(['failed', 'active', 'active']);
  });

  it('1000 tampered-tag style errors never fail a member', async () => {
    const h = await fx.openSigning();
    for (const f of h.faults) f.failNext('sign', { rv: pkcs11js.CKR_GENERAL_ERROR }, 333);
    const results = await Promise.allSettled(Array.from({ length: 999 }, () => h.sign()));
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
  });
});

describe('key management under failure', () => {
  it.each(['destroyObject', 'setAttributes'] as const)('%s: the first holder dropping under the call moves it to the next holder; the dropped one owes it', async (op) => {
    const h = await fx.openSigning();
    const data = await h.session.createObject({ class: 'data', label: `f-${op}`, application: 'failover', value: Buffer.from('x'), token: false });
    expect(h.group.describeObject(data)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
    h.faults[0]!.failNext(op, 'disconnect');
    if (op === 'destroyObject') {
      await h.session.destroyObject(data);
      expect(h.group.describeObject(data)).toBeUndefined();
    } else {
      await h.session.setAttributes(data, { label: 'f-renamed' });
      expect(await h.session.findObjects({ label: 'f-renamed' })).toEqual([data]);
    }
    expect(states(h.group)).toEqual(['failed', 'active', 'active']);
    expect(h.group.status().owed).toEqual({ 'member-1': 1 });
  });
});

describe('no member left', () => {
  it('with no member left at all, calls fail fast with a typed error', async () => {
    const h = await fx.openSigning({ count: 2 });
    h.down[0] = h.down[1] = true;
    h.faults[0]!.disconnect();
    h.faults[1]!.disconnect();
    await expect(h.sign()).rejects.toMatchObject({ code: 'ERR_NO_MEMBER' });
  });
});
