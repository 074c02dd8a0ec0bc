import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { electPrimary } from '../../src/member/primary-election.js';
import { isServing, type MemberState } from '../../src/member/member-state.js';

// Shorthand states: A active, S standby, P promoted standby, F failed, R recovering, X removed.
const STATES: Record<string, MemberState> = {
  A: { kind: 'active' },
  S: { kind: 'standby', promoted: false },
  P: { kind: 'standby', promoted: true },
  F: { kind: 'failed', role: 'active', since: 0, attempts: 1, reason: 'x' },
  f: { kind: 'failed', role: 'standby', since: 0, attempts: 1, reason: 'x' },
  R: { kind: 'recovering', role: 'active', since: 0, attempt: 1 },
  X: { kind: 'removed', role: 'active' },
};
const members = (row: string) => [...row].map((c, index) => ({ index, state: STATES[c]! }));

describe('electPrimary', () => {
  it.each([
    // members, demoteStandbys, primary, promote, demote
    { row: 'AAA', demote: true, primary: 0, promote: [], demoted: [] },
    { row: 'FAA', demote: true, primary: 1, promote: [], demoted: [] },
    { row: 'SAA', demote: true, primary: 1, promote: [], demoted: [] },
    { row: 'FRX', demote: true, primary: undefined, promote: [], demoted: [] },
    { row: 'FSS', demote: true, primary: 1, promote: [1, 2], demoted: [] },
    { row: 'FfS', demote: true, primary: 2, promote: [2], demoted: [] },
    { row: 'FPS', demote: true, primary: 1, promote: [2], demoted: [] },
    { row: 'APP', demote: true, primary: 0, promote: [], demoted: [1, 2] },
    { row: 'APP', demote: false, primary: 0, promote: [], demoted: [] },
    // A promoted standby kept (no demotion) comes before a later active member.
    { row: 'PA', demote: false, primary: 0, promote: [], demoted: [] },
    { row: 'PA', demote: true, primary: 1, promote: [], demoted: [0] },
    { row: 'RSF', demote: true, primary: 1, promote: [1], demoted: [] },
    { row: 'XA', demote: true, primary: 1, promote: [], demoted: [] },
  ])('$row (demoteStandbys $demote): primary $primary, promote $promote, demote $demoted', ({ row, demote, primary, promote, demoted }) => {
    expect(electPrimary(members(row), { demoteStandbys: demote })).toEqual({ primary, promote, demote: demoted });
  });

  it('properties: the primary serves, is active or promoted when one is, and never a plain standby while an active member serves', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...Object.keys(STATES)), { minLength: 1, maxLength: 8 }), fc.boolean(), (codes, demoteStandbys) => {
        const ms = members(codes.join(''));
        const r = electPrimary(ms, { demoteStandbys });
        const anyServing = ms.some((m) => isServing(m.state));
        expect(r.primary === undefined).toBe(!anyServing);
        if (r.primary === undefined) return;
        const p = ms[r.primary]!.state;
        expect(isServing(p)).toBe(true);
        const anyActive = ms.some((m) => m.state.kind === 'active');
        if (anyActive && demoteStandbys) expect(p.kind).toBe('active');
        if (!anyActive) expect(r.promote.length + ms.filter((m) => m.state.kind === 'standby' && m.state.promoted).length).toBeGreaterThan(0);
        // Promotions and demotions only ever touch standby members, never both at once.
        for (const i of [...r.promote, ...r.demote]) expect(ms[i]!.state.kind).toBe('standby');
        expect(r.promote.some((i) => r.demote.includes(i))).toBe(false);
      }),
    );
  });
});
