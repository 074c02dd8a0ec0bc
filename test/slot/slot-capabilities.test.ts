/**
 * What the virtual slot supports (slot/slot-capabilities.ts): the members' mechanism lists
 * intersected and their token limits combined (tables), and on real SoftHSM2 tokens the
 * cache, asked of the members again only when the serving members change.
 */
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import type { TokenLimitsRead } from '../../src/pkcs11/commands.js';
import { combineMechanisms, combineTokenLimits } from '../../src/slot/slot-capabilities.js';
import { faultGroups, states } from '../helpers/fault-group.js';

const F = pkcs11js;

describe('combining the members', () => {
  it('keeps the mechanisms every member has, the key sizes that fit all, the flags all have', () => {
    const a = [
      { type: F.CKM_AES_GCM, minKeySize: 16, maxKeySize: 32, flags: F.CKF_ENCRYPT | F.CKF_DECRYPT },
      { type: F.CKM_RSA_PKCS, minKeySize: 512, maxKeySize: 16384, flags: F.CKF_SIGN | F.CKF_VERIFY | F.CKF_WRAP },
      { type: F.CKM_DES_ECB, minKeySize: 8, maxKeySize: 8, flags: F.CKF_ENCRYPT },
    ];
    const b = [
      { type: F.CKM_RSA_PKCS, minKeySize: 1024, maxKeySize: 4096, flags: F.CKF_SIGN | F.CKF_VERIFY },
      { type: F.CKM_AES_GCM, minKeySize: 16, maxKeySize: 32, flags: F.CKF_ENCRYPT | F.CKF_DECRYPT },
    ];
    const out = combineMechanisms([a, b]);
    expect([...out.keys()].sort()).toEqual([F.CKM_AES_GCM, F.CKM_RSA_PKCS].sort());
    expect(out.get(F.CKM_RSA_PKCS)).toEqual({ type: F.CKM_RSA_PKCS, minKeySize: 1024, maxKeySize: 4096, flags: F.CKF_SIGN | F.CKF_VERIFY });
    expect(combineMechanisms([])).toEqual(new Map());
  });

  const token = (over: Partial<TokenLimitsRead>): TokenLimitsRead => ({
    flags: F.CKF_RNG | F.CKF_LOGIN_REQUIRED | F.CKF_USER_PIN_INITIALIZED | F.CKF_TOKEN_INITIALIZED,
    maxSessionCount: 0,
    sessionCount: 2,
    maxRwSessionCount: 0,
    rwSessionCount: 1,
    maxPinLen: 255,
    minPinLen: 4,
    totalPublicMemory: -1,
    freePublicMemory: -1,
    totalPrivateMemory: -1,
    freePrivateMemory: -1,
    ...over,
  });

  it.each([
    ['a capability only when every member has it', [token({}), token({ flags: F.CKF_LOGIN_REQUIRED | F.CKF_TOKEN_INITIALIZED })], { flags: F.CKF_LOGIN_REQUIRED | F.CKF_TOKEN_INITIALIZED }],
    ['a warning when any member has it', [token({}), token({ flags: token({}).flags | 0x10000 })], { flags: token({}).flags | 0x10000 }],
    ['PIN lengths every member takes', [token({ minPinLen: 6, maxPinLen: 64 }), token({})], { minPinLen: 6, maxPinLen: 64 }],
    ['session limits: the smallest, none (0) when no member has one', [token({ maxSessionCount: 0 }), token({ maxSessionCount: 100 })], { maxSessionCount: 100, maxRwSessionCount: 0 }],
    ['memory: the smallest, unavailable when a member does not say', [token({ freePublicMemory: 5000 }), token({ freePublicMemory: 3000, totalPublicMemory: 9000 })], { freePublicMemory: 3000, totalPublicMemory: -1 }],
    ['members\u2019 session counters summed', [token({}), token({ sessionCount: 5 })], { memberSessions: 7, memberRwSessions: 2 }],
  ])('%s', (_name, reads, expected) => {
    expect(combineTokenLimits(reads.map((t, i) => ({ member: `m${i}`, token: t })))).toMatchObject(expected);
  });
});

describe('on real tokens', () => {
  const fx = faultGroups({ prefix: 'sc' });

  it("answers the tokens' mechanisms and limits, from the cache until the serving members change", async () => {
    const h = await fx.open();
    const asked = () => h.faults.map((f) => f.executed('getMechanismList'));
    const mechanisms = await h.group.slot.mechanisms();
    expect(mechanisms.get(F.CKM_AES_GCM)).toMatchObject({ minKeySize: 16, maxKeySize: 32 });
    expect(mechanisms.get(F.CKM_AES_GCM)!.flags & F.CKF_ENCRYPT).toBeTruthy();
    expect(mechanisms.get(F.CKM_ECDSA)!.flags & F.CKF_SIGN).toBeTruthy();
    const limits = await h.group.slot.tokenLimits();
    const required = F.CKF_RNG | F.CKF_LOGIN_REQUIRED | F.CKF_USER_PIN_INITIALIZED | F.CKF_TOKEN_INITIALIZED;
    expect(limits.flags & required).toBe(required);
    expect(limits.members).toEqual(['member-1', 'member-2', 'member-3']);
    expect(limits.minPinLen).toBeGreaterThan(0);
    expect(asked()).toEqual([1, 1, 1]);
    // In a loop: no member is asked again.
    for (let i = 0; i < 20; i++) await h.group.slot.mechanisms();
    await h.group.slot.tokenLimits();
    expect(asked()).toEqual([1, 1, 1]);
    // A member fails: the answer stands for the members that serve.
    h.down[1] = true;
    h.faults[1]!.disconnect();
    expect(states(h.group)[1]).toBe('failed');
    expect((await h.group.slot.tokenLimits()).members).toEqual(['member-1', 'member-3']);
    expect([asked()[0], asked()[2]]).toEqual([2, 2]);
    // It comes back: asked again, with it.
    h.down[1] = false;
    expect(await h.group.recover('member-2')).toBe(true);
    expect((await h.group.slot.tokenLimits()).members).toEqual(['member-1', 'member-2', 'member-3']);
    expect(asked().at(1)).toBe(1);
  });
});
