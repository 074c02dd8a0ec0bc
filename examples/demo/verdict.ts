/**
 * The demo's verdict: what, in what the story saw, keeps it from showing what it claims
 * (no failed operation, the standby promoted, every member recovered with nothing owed,
 * every token verified alone). The entry point exits 1 when there is anything.
 */
import type { StoryResult } from './story.js';

/** What the verdict reads of a story's result. */
export type VerdictInput = Pick<StoryResult, 'promoted' | 'notRecovered' | 'stillOwed' | 'verdicts'> & {
  readonly load: Pick<StoryResult['load'], 'ok' | 'failed' | 'failures'>;
};

/** The verdict's reasons, one line each: empty when the demo showed what it claims. */
export function problems(result: VerdictInput): string[] {
  const out: string[] = [];
  if (result.load.failed > 0) out.push(`${result.load.failed} operation(s) failed: ${result.load.failures.slice(0, 3).join('; ')}`);
  if (result.load.ok === 0) out.push('no operation ran');
  if (result.promoted.length === 0) out.push('the standby was not promoted');
  if (result.notRecovered.length > 0) out.push(`not recovered: ${result.notRecovered.join(', ')}`);
  if (result.stillOwed > 0) out.push(`${result.stillOwed} item(s) still owed after the recovery`);
  for (const v of result.verdicts) if (v.problems.length > 0) out.push(`${v.member} not verified: ${v.problems.join('; ')}`);
  return out;
}

/** The demo's exit code for its verdict's reasons: 0 when there are none, 1 otherwise. */
export function exitCodeFor(reasons: readonly string[]): 0 | 1 {
  return reasons.length === 0 ? 0 : 1;
}
