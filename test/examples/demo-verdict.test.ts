/**
 * The demo's verdict (examples/demo/verdict.ts): a story that showed everything gives no
 * reason and exit 0; a failed operation, no promoted standby, a member not recovered,
 * something still owed or a member not verified each give a reason and a non-zero exit.
 */
import { describe, expect, it } from 'vitest';
import { exitCodeFor, problems, type VerdictInput } from '../../examples/demo/verdict.js';

const MEMBERS = ['demo-hsm-1', 'demo-hsm-2', 'demo-hsm-3', 'demo-hsm-4'];

/** What a story that went as told returns, changed by `over`. */
function story(over: Partial<VerdictInput> = {}): VerdictInput {
  return {
    load: { ok: 1200, failed: 0, failures: [] },
    promoted: ['demo-hsm-4'],
    notRecovered: [],
    stillOwed: 0,
    verdicts: MEMBERS.map((member) => ({ member, present: 7, gone: 2, problems: [] })),
    ...over,
  };
}

describe('the demo verdict', () => {
  it('a story that showed everything: no reason, exit 0', () => {
    expect(problems(story())).toEqual([]);
    expect(exitCodeFor(problems(story()))).toBe(0);
  });

  it.each([
    { what: 'a failed operation', over: { load: { ok: 1199, failed: 1, failures: ['hmac-sign: ERR_NO_MEMBER: no member serves'] } }, reason: '1 operation(s) failed: hmac-sign: ERR_NO_MEMBER: no member serves' },
    { what: 'no operation at all', over: { load: { ok: 0, failed: 0, failures: [] } }, reason: 'no operation ran' },
    { what: 'no promotion', over: { promoted: [] }, reason: 'the standby was not promoted' },
    { what: 'a member not recovered', over: { notRecovered: ['demo-hsm-2'] }, reason: 'not recovered: demo-hsm-2' },
    { what: 'something still owed', over: { stillOwed: 3 }, reason: '3 item(s) still owed after the recovery' },
    {
      what: 'an unverified member',
      over: { verdicts: MEMBERS.map((member) => ({ member, present: 7, gone: 2, problems: member === 'demo-hsm-3' ? ['key demo-key-5 missing'] : [] })) },
      reason: 'demo-hsm-3 not verified: key demo-key-5 missing',
    },
  ] satisfies { what: string; over: Partial<VerdictInput>; reason: string }[])('$what: its reason, and a non-zero exit', ({ over, reason }) => {
    const reasons = problems(story(over));
    expect(reasons).toEqual([reason]);
    expect(exitCodeFor(reasons)).not.toBe(0);
  });

  it('names at most three failures, and every reason at once', () => {
    const reasons = problems(story({ load: { ok: 10, failed: 5, failures: ['a', 'b', 'c', 'd', 'e'] }, promoted: [], stillOwed: 1 }));
    expect(reasons).toEqual(['5 operation(s) failed: a; b; c', 'the standby was not promoted', '1 item(s) still owed after the recovery']);
    expect(exitCodeFor(reasons)).toBe(1);
  });
});
