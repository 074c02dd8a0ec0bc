/**
 * GroupLogin on real SoftHSM2 tokens: the PIN verified on one member before the others
 * see it, tokens already logged in by other code, and a recovering member's login
 * matched with the group's.
 */
import { describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { internalsOf } from '../../src/testing.js';
import { faultGroups, states } from '../helpers/fault-group.js';
import { RecordingTransport, type Exchange } from '../helpers/recording-transport.js';
import { until } from '../helpers/until.js';

const fx = faultGroups({ prefix: 'gl', domain: true });

describe('the PIN is verified on one member first', () => {
  /** A group whose transports record every command; `logins()` lists the members that saw a C_Login, in order. */
  async function recorded(): Promise<{ group: HaGroup; logins: () => string[] }> {
    const log: Exchange[] = [];
    const group = fx.track(
      await HaGroup.open({ members: fx.bed.memberConfigs(), transport: 'in-process', transportFactory: (m, makeDefault) => new RecordingTransport(m.name, makeDefault(), log) }),
    );
    return { group, logins: () => log.filter((e) => e.command.op === 'login').map((e) => e.member) };
  }

  it('a wrong PIN reaches exactly one member (the primary), and the group stays logged out', async () => {
    const { group, logins } = await recorded();
    const session = group.slot.openSession();
    await expect(session.login('00000000')).rejects.toMatchObject({ ckr: 'CKR_PIN_INCORRECT' });
    expect(logins()).toEqual(['member-1']);
    expect(group.status().members.map((m) => m.loginFailures)).toEqual([1, 0, 0]);
    expect(states(group)).toEqual(['active', 'active', 'active']);
    // Not logged in: a second try is a login, not CKR_USER_ALREADY_LOGGED_IN.
    await session.login(fx.bed.tokens[0]!.userPin);
  });

  it('the right PIN reaches every member once, the verifier before the others', async () => {
    const { group, logins } = await recorded();
    await group.slot.openSession().login(fx.bed.tokens[0]!.userPin);
    expect(logins()[0]).toBe('member-1');
    expect([...logins()].sort()).toEqual(['member-1', 'member-2', 'member-3']);
  });
});

describe('an ambiguous answer from the verifier', () => {
  // Found by the chaos run (seed 2): the verifier's module answered CKR_GENERAL_ERROR to
  // every command; the login failed with it and the application stayed logged out while
  // two members could have verified the PIN.
  it('from a member that then fails its probe: the next member verifies the PIN', async () => {
    const h = await fx.open();
    h.faults[0]!.failNext('login', { rv: pkcs11js.CKR_GENERAL_ERROR });
    h.faults[0]!.failNext('generateRandom', { rv: pkcs11js.CKR_GENERAL_ERROR });
    const session = h.group.slot.openSession();
    await session.login(fx.bed.tokens[0]!.userPin);
    expect(states(h.group)[0]).toBe('failed');
    expect(h.faults[1]!.executed('login') + h.faults[2]!.executed('login')).toBe(2);
    expect(await session.findObjects({ label: 'gl-aes' })).toHaveLength(1);
  });

  it('from a member that answers its probe: the caller gets it, and no other member sees the PIN', async () => {
    const h = await fx.open();
    h.faults[0]!.failNext('login', { rv: pkcs11js.CKR_GENERAL_ERROR });
    const session = h.group.slot.openSession();
    await expect(session.login(fx.bed.tokens[0]!.userPin)).rejects.toMatchObject({ ckr: 'CKR_GENERAL_ERROR' });
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    expect(h.faults[1]!.executed('login') + h.faults[2]!.executed('login')).toBe(0);
  });
});

describe('tokens already logged in', () => {
  it('a token already logged in by other code proves nothing: a typo is caught by the next member and reaches no other', async () => {
    const h = await fx.openSigning();
    await h.session.logout();
    // Other code sharing member-1's module logs in on its own.
    await internalsOf(h.group).members[0]!.login(pkcs11js.CKU_USER, fx.bed.tokens[0]!.userPin);
    const before = h.group.status().members.map((m) => m.loginFailures);
    await expect(h.group.slot.openSession().login('00000000')).rejects.toMatchObject({ ckr: 'CKR_PIN_INCORRECT' });
    const after = h.group.status().members.map((m) => m.loginFailures);
    expect(after.map((n, i) => n - before[i]!)).toEqual([0, 1, 0]);
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
    // The right PIN then logs the group in; member-1 keeps its login.
    await h.group.slot.openSession().login(fx.bed.tokens[0]!.userPin);
    expect(await h.sign()).toEqual(h.expectedMac);
  });

  it('a typo in the PIN is refused even when the primary is already logged in by its userPin', async () => {
    // userPin members are logged in by recovery even when the application never logged in.
    const h = await fx.open();
    const session = h.group.slot.openSession();
    h.faults[0]!.disconnect();
    expect(await h.group.recover('member-1')).toBe(true);
    expect(h.group.primary).toBe('member-1');
    // The verifier (member-1) answers CKR_USER_ALREADY_LOGGED_IN, which Member.login swallows:
    // the wrong PIN must not count as verified and be sent to every other token.
    await expect(session.login('wrong-pin')).rejects.toMatchObject({ ckr: 'CKR_PIN_INCORRECT' });
    expect(states(h.group)).toEqual(['active', 'active', 'active']);
  });
});

describe("a recovering member's login", () => {
  it('a login made while a member is recovering reaches that member (else it rejoins logged out)', async () => {
    // Members without userPin: recovery logs in with the application's PIN, read once at the
    // start of the restore. A login() that lands after that read skips the member (not serving).
    const h = await fx.open({ withoutUserPins: true });
    const session = h.group.slot.openSession();
    h.faults[0]!.disconnect();
    expect(states(h.group)).toEqual(['failed', 'active', 'active']);
    // Hold the recovery at its first command after the login step (readMemberDomain's search).
    h.onReconnect[0] = (f) => f.failNext('findObjects', 'hang');
    const recovering = h.group.recover('member-1');
    await until(() => h.faults[0]!.hanging === 1, 'the recovery to pass its login step');
    await session.login(fx.bed.tokens[0]!.userPin);
    h.faults[0]!.release();
    expect(await recovering).toBe(true);
    expect(h.group.primary).toBe('member-1');
    // The application is logged in; the primary is not. Generating a private token key on it:
    await expect(
      session.generateKey('AES_KEY_GEN', { label: 'rv-after-login', token: true, private: true, valueLen: 32, encrypt: true, decrypt: true }),
    ).resolves.toBeTypeOf('number');
  });
});
