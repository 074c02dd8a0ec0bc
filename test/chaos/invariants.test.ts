import { describe, expect, it } from 'vitest';
import { checkInvariants, type KeyFact, type KeyProbe, type RunFacts, type TokenObject, type TokenSnapshot } from '../../chaos/invariants.js';
import { DOMAIN_KEY_LABEL } from '../../src/replication/domain-key.js';

const id = (text: string): string => Buffer.from(text).toString('hex');
const MEMBERS = ['m1', 'm2', 'm3'];
const aes: KeyFact = { id: id('aes-1'), kind: 'aes', state: 'live', labels: new Set(['a-v1']) };
const ec: KeyFact = { id: id('ec-1'), kind: 'ec', state: 'live', labels: new Set(['e-v0']) };
const gone: KeyFact = { id: id('gone-1'), kind: 'hmac', state: 'destroyed', labels: new Set(['g-v0']) };

/** Every member holding the domain key, the AES key and the EC pair, probes agreeing. */
function healthy(): TokenSnapshot[] {
  return MEMBERS.map((member) => ({
    member,
    objects: [
      { class: 'secretKey', label: DOMAIN_KEY_LABEL, id: 'aa' },
      { class: 'secretKey', label: 'a-v1', id: aes.id },
      { class: 'privateKey', label: 'e-v0', id: ec.id },
      { class: 'publicKey', label: 'e-v0', id: ec.id },
    ],
    probes: new Map<string, KeyProbe>([
      [aes.id, { output: 'c1', crossOk: true }],
      [ec.id, { crossOk: true }],
    ]),
  }));
}

function facts(tokens: TokenSnapshot[], overrides: Partial<RunFacts> = {}): RunFacts {
  return {
    keys: [aes, ec, gone],
    tokens,
    errors: 0,
    owedAtEnd: {},
    notServingAtEnd: [],
    journalRestart: { owedBefore: 3, owedAfterLogin: 0, missing: [] },
    leftovers: { processes: [], fds: [], tempFiles: [] },
    ...overrides,
  };
}

const withObjects = (t: TokenSnapshot, objects: TokenObject[]): TokenSnapshot => ({ ...t, objects });

describe('checkInvariants', () => {
  it('holds for healthy tokens', () => {
    expect(Object.values(checkInvariants(facts(healthy())))).toEqual(Array(8).fill('held'));
  });

  it('catches a key left on one member only', () => {
    const tokens = healthy().map((t, i) => (i === 0 ? t : withObjects(t, t.objects.filter((o) => o.id !== aes.id))));
    const v = checkInvariants(facts(tokens));
    expect(v.allKeysEverywhere).toMatch(/^breached: .*aes-1 \(secretKey\) missing on m2/);
    expect(v.noResurrection).toBe('held');
  });

  it('catches a key that gives other output on one member, or cannot use the others\' output', () => {
    const other = healthy();
    other[2] = { ...other[2]!, probes: new Map([[aes.id, { output: 'c2', crossOk: true }], [ec.id, { crossOk: false, error: 'CKR_SIGNATURE_INVALID' }]]) };
    const v = checkInvariants(facts(other));
    expect(v.allKeysEverywhere).toMatch(/2 different outputs/);
    expect(v.allKeysEverywhere).toMatch(/ec-1 does not work across members on m3/);
  });

  it('catches a destroyed key come back, a stray object and a failed creation left behind', () => {
    const tokens = healthy();
    tokens[1] = withObjects(tokens[1]!, [...tokens[1]!.objects, { class: 'secretKey', label: 'g-v0', id: gone.id }, { class: 'secretKey', label: 'who', id: id('nobody') }]);
    const failed: KeyFact = { id: id('failed-1'), kind: 'aes', state: 'failedCreate', labels: new Set(['f']) };
    tokens[2] = withObjects(tokens[2]!, [...tokens[2]!.objects, { class: 'secretKey', label: 'f', id: failed.id }]);
    const v = checkInvariants({ ...facts(tokens), keys: [aes, ec, gone, failed] });
    expect(v.noResurrection).toMatch(/gone-1 on m2 as secretKey "g-v0"/);
    expect(v.noStrayObjects).toMatch(/"who" \(CKA_ID nobody\) on m2: unknown/);
    expect(v.noStrayObjects).toMatch(/"f" on m3: its creation failed/);
  });

  it('catches attributes that disagree across members or with the application', () => {
    const tokens = healthy();
    tokens[0] = withObjects(tokens[0]!, tokens[0]!.objects.map((o) => (o.id === aes.id ? { ...o, label: 'a-v0' } : o)));
    expect(checkInvariants(facts(tokens)).attributesAgree).toMatch(/labelled a-v0 \/ a-v1|labelled a-v1 \/ a-v0/);
  });

  it('accepts either outcome of a change that failed, but the same on every member', () => {
    const unsure: KeyFact = { ...aes, labels: new Set(['a-v1', 'a-v2']) };
    expect(checkInvariants({ ...facts(healthy()), keys: [unsure, ec, gone] }).attributesAgree).toBe('held');
  });

  it('an uncertain destruction must have happened everywhere or nowhere', () => {
    const unsure: KeyFact = { ...aes, state: 'uncertain' };
    const none = healthy().map((t) => withObjects(t, t.objects.filter((o) => o.id !== aes.id)));
    expect(checkInvariants({ ...facts(none), keys: [unsure, ec, gone] }).allKeysEverywhere).toBe('held');
    const some = healthy().map((t, i) => (i === 1 ? withObjects(t, t.objects.filter((o) => o.id !== aes.id)) : t));
    expect(checkInvariants({ ...facts(some), keys: [unsure, ec, gone] }).allKeysEverywhere).toMatch(/missing on m2/);
  });

  it('catches failed operations, debts, a bad restart and leftovers', () => {
    const v = checkInvariants(
      facts(healthy(), {
        errors: 2,
        firstError: 'aes-gcm encrypt/decrypt at 10 ms: ERR_NO_MEMBER: no member',
        owedAtEnd: { m2: 3 },
        notServingAtEnd: ['m3'],
        journalRestart: { owedBefore: 3, owedAfterLogin: 1, missing: [aes.id] },
        leftovers: { processes: [1234], fds: ['27 -> socket:[1]'], tempFiles: ['pkcs11-ha-host-x'] },
      }),
    );
    expect(v.noFailedOperations).toMatch(/^breached: 2 failed operation\(s\): aes-gcm/);
    expect(v.nothingOwed).toMatch(/m2 owes 3; m3 does not serve/);
    expect(v.journalRestart).toMatch(/1 item\(s\) still owed.*aes-1 not found once/);
    expect(v.noLeftovers).toMatch(/process 1234 alive; fd 27 -> socket:\[1\] open; temporary file pkcs11-ha-host-x/);
  });
});
