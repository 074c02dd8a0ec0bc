/**
 * The fast-check settings of the property-based bad-input tests: a fixed seed and run
 * counts small enough for CI by default, longer runs on demand.
 *
 *   FC_SEED=<n>   seed of every property (default 16); a failure prints its seed and path
 *   FC_RUNS=<n>   runs of every property instead of its CI count (e.g. FC_RUNS=5000)
 *
 * @example
 * FC_RUNS=2000 FC_SEED=$RANDOM npx vitest run test/slot/bad-input.test.ts
 */
import type { Parameters as FcParameters } from 'fast-check';

/** The default seed: the same runs in every CI build. */
const DEFAULT_SEED = 16;

function envInteger(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return value;
}

/** The seed in use (FC_SEED or the fixed default). */
export const fuzzSeed: number = envInteger('FC_SEED') ?? DEFAULT_SEED;

/** How many runs a property or a loop makes: FC_RUNS when set, else its CI count. */
export function fuzzRuns(ciRuns: number): number {
  const runs = envInteger('FC_RUNS');
  return runs !== undefined && runs > 0 ? runs : ciRuns;
}

/** True when FC_RUNS asks for longer runs than CI's (tests widen their time limits then). */
export const longRun: boolean = (envInteger('FC_RUNS') ?? 0) > 0;

/** fast-check parameters for a property whose CI run count is `ciRuns`. */
export function fuzzParameters<T>(ciRuns: number): FcParameters<T> {
  return { seed: fuzzSeed, numRuns: fuzzRuns(ciRuns), endOnFailure: true };
}
