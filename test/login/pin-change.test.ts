/**
 * PIN changes across the group on real SoftHSM2 tokens (login/pin-change.ts through
 * VirtualSession.setPin / initPin): every member or none, a down member refusing the
 * change, a member failing during it rolled back on the others, and the PIN kept for
 * recovery logins following the change. Each test puts the bed's PIN back at its end.
 */
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { faultGroups, states, type FaultGroup } from '../helpers/fault-group.js';

const fx = faultGroups({ prefix: 'pc' });
const NEW_PIN = '73120984';

/** Logs out, then in with `pin`: every member must accept it (one refusing would be failed). */
async function loginEverywhere(h: FaultGroup, pin: string): Promise<void> {
  const session = h.group.slot.openSession();
  await session.login(pin);
  expect(states(h.group)).toEqual(['active', 'active', 'active']);
  await session.logout();
  await session.close();
}

const setPins = (h: FaultGroup) => h.faults.map((f) => f.executed('setPin'));

describe('C_SetPIN on every member or on none', () => {
  it('changes the PIN on every member, and the group logs in with the new one everywhere', async () => {
    const old = fx.bed.tokens[0]!.userPin;
    const h = await fx.open();
    const session = h.group.slot.openSession();
    await session.login(old);
    await session.setPin(old, NEW_PIN);
    expect(setPins(h)).toEqual([1, 1, 1]);
    await session.logout();
    await expect(session.login(old)).rejects.toMatchObject({ ckr: 'CKR_PIN_INCORRECT' });
    await loginEverywhere(h, NEW_PIN);
    await session.login(NEW_PIN);
    await session.setPin(NEW_PIN, old);
    await session.logout();
    await loginEverywhere(h, old);
  });

  it('a wrong old PIN reaches one member only, and nothing changes', async () => {
    const old = fx.bed.tokens[0]!.userPin;
    const h = await fx.open();
    const session = h.group.slot.openSession();
    await session.login(old);
    const error = await session.setPin('00000000', NEW_PIN).catch((e: Error) => e);
    expect(error).toMatchObject({ code: 'ERR_PKCS11', ckr: 'CKR_PIN_INCORRECT' });
    expect(setPins(h)).toEqual([1, 0, 0]);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    await session.logout();
    await loginEverywhere(h, old);
  });

  it('a member down refuses the change with a clear error, and no member sees it', async () => {
    const old = fx.bed.tokens[0]!.userPin;
    const h = await fx.open();
    const session = h.group.slot.openSession();
    await session.login(old);
    h.down[1] = true;
    h.faults[1]!.disconnect();
    expect(states(h.group)[1]).toBe('failed');
    const error = (await session.setPin(old, NEW_PIN).catch((e: Error) => e)) as Error & { code: string };
    expect(error.code).toBe('ERR_MEMBER_UNREACHABLE');
    expect(error.message).toMatch(/member-2.*is failed.*needs every member.*made on none/);
    expect(error.message).not.toContain(old);
    expect(error.message).not.toContain(NEW_PIN);
    expect(setPins(h)).toEqual([0, 0, 0]);
    // The members still have the old PIN.
    h.down[1] = false;
    expect(await h.group.recover('member-2')).toBe(true);
    await session.logout();
    await loginEverywhere(h, old);
  });

  it('a member failing during the change has it rolled back on the members that took it', async () => {
    const old = fx.bed.tokens[0]!.userPin;
    const h = await fx.open();
    const session = h.group.slot.openSession();
    await session.login(old);
    h.faults[2]!.failNext('setPin', 'disconnect');
    const error = (await session.setPin(old, NEW_PIN).catch((e: Error) => e)) as Error & { code: string };
    expect(error.code).toBe('ERR_MEMBER_UNREACHABLE');
    expect(error.message).toMatch(/member-3.*rolled back on member-1, member-2/);
    expect(error.message).not.toContain(NEW_PIN);
    // Change and rollback on the two that took it.
    expect(setPins(h).slice(0, 2)).toEqual([2, 2]);
    expect(await h.group.recover('member-3')).toBe(true);
    await session.logout();
    await loginEverywhere(h, old);
  });

  it('a member refusing the new PIN has the change rolled back elsewhere, and its answer is the error', async () => {
    const old = fx.bed.tokens[0]!.userPin;
    const h = await fx.open();
    const session = h.group.slot.openSession();
    await session.login(old);
    h.faults[1]!.failNext('setPin', { rv: pkcs11js.CKR_PIN_LEN_RANGE });
    await expect(session.setPin(old, NEW_PIN)).rejects.toMatchObject({ ckr: 'CKR_PIN_LEN_RANGE' });
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    await session.logout();
    await loginEverywhere(h, old);
  });

  it('a recovering member logs in with the new PIN, not its configured userPin', async () => {
    const old = fx.bed.tokens[0]!.userPin;
    const h = await fx.open();
    const session = h.group.slot.openSession();
    await session.login(old);
    await session.setPin(old, NEW_PIN);
    h.faults[1]!.disconnect();
    expect(states(h.group)[1]).toBe('failed');
    expect(await h.group.recover('member-2')).toBe(true);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    await session.setPin(NEW_PIN, old);
    await session.logout();
    await loginEverywhere(h, old);
  });
});

describe('C_InitPIN by the security officer', () => {
  it('sets the user PIN on every member; refused to anyone but the SO', async () => {
    const { userPin: old, soPin } = fx.bed.tokens[0]!;
    const h = await fx.open();
    const session = h.group.slot.openSession();
    await expect(session.initPin(NEW_PIN)).rejects.toMatchObject({ ckr: 'CKR_USER_NOT_LOGGED_IN' });
    await session.login(soPin, 'so');
    await session.initPin(NEW_PIN);
    expect(h.faults.map((f) => f.executed('initPin'))).toEqual([1, 1, 1]);
    await session.logout();
    await loginEverywhere(h, NEW_PIN);
    await session.login(soPin, 'so');
    await session.initPin(old);
    await session.logout();
    await loginEverywhere(h, old);
  });
});
