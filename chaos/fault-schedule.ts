/**
 * The chaos run's fault schedule: a pure function of the seed and the run's length, so
 * that the same seed always gives the same faults, at the same offsets, on the same
 * members (test/chaos/fault-schedule.test.ts). What a fault does to a live group is
 * chaos/fault-injector.ts; when it lands may slip (one fault at a time: the injector waits
 * until every member serves again before the next), never what it is.
 */
import { seededRandom } from '../src/testing.js';

/** The kinds of fault, as counted in the result. */
export const FAULT_KINDS = ['kill', 'stop', 'restart', 'slow', 'error', 'groupRestart'] as const;
/** A kind of fault. */
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * Return codes a module is made to answer with. Member-class codes only, or an ambiguous
 * one for EVERY command (the group's probe then fails too): a single ambiguous answer to
 * a well member goes back to the caller by design (it may be the caller's bad input), so
 * injecting one would count a correct refusal as a failure.
 */
export const INJECTED_CODES = ['CKR_DEVICE_ERROR', 'CKR_DEVICE_REMOVED', 'CKR_TOKEN_NOT_PRESENT', 'CKR_SESSION_HANDLE_INVALID', 'CKR_HOST_MEMORY'] as const;

/** Commands an error fault may be limited to (`op` names of the member protocol). */
export const INJECTABLE_OPS = ['encrypt', 'decrypt', 'sign', 'verify', 'digest', 'generateKey', 'unwrapKey', 'encryptUpdate', 'signUpdate', 'findObjects'] as const;

/** One fault of the schedule. */
export type Fault =
  /** SIGKILL the member's host; the group recovers it (a new host). */
  | { readonly atMs: number; readonly kind: 'kill'; readonly member: number }
  /** SIGSTOP the host, SIGCONT after `durationMs` (if the group has not replaced it by then). */
  | { readonly atMs: number; readonly kind: 'stop'; readonly member: number; readonly durationMs: number }
  /** SIGTERM: the host closes its module and exits cleanly; the group recovers it. */
  | { readonly atMs: number; readonly kind: 'restart'; readonly member: number }
  /** Every command of the host takes `delayMs` longer for `durationMs`. */
  | { readonly atMs: number; readonly kind: 'slow'; readonly member: number; readonly delayMs: number; readonly durationMs: number }
  /**
   * The module answers `ckr` to the next `count` commands of `ops` (all commands when
   * absent); with `count` absent, to every such command for `durationMs`.
   */
  | {
      readonly atMs: number;
      readonly kind: 'error';
      readonly member: number;
      readonly ckr: string;
      readonly ops?: readonly string[];
      readonly count?: number;
      readonly durationMs: number;
    }
  /**
   * The application's group is closed and opened again from its journal while `member`
   * (killed just before) owes what was made, changed and destroyed meanwhile.
   */
  | { readonly atMs: number; readonly kind: 'groupRestart'; readonly member: number };

/** Options of {@link faultSchedule}. */
export interface ScheduleOptions {
  /** Members of the group (active and standby). @default 4 */
  readonly members?: number;
  /** No fault before this offset (the load warms up). @default 1500 */
  readonly startMs?: number;
  /** Shortest and longest gap between two faults. @default [700, 2500] */
  readonly gapMs?: readonly [number, number];
  /** No fault starts in the last this-many ms (the group heals after). @default 2000 */
  readonly quietEndMs?: number;
}

/** Kinds drawn for the regular faults, with their weights. */
const WEIGHTS: readonly (readonly [Exclude<FaultKind, 'groupRestart'>, number])[] = [
  ['kill', 3],
  ['stop', 3],
  ['restart', 2],
  ['slow', 2],
  ['error', 3],
];

/**
 * The faults of a run of `durationMs` under `seed`, in time order: regular faults at
 * seeded gaps, and one `groupRestart` at about 55 % of the run (none in a run too short
 * to fit it).
 */
export function faultSchedule(seed: number, durationMs: number, options: ScheduleOptions = {}): Fault[] {
  const members = options.members ?? 4;
  const startMs = options.startMs ?? 1500;
  const [minGap, maxGap] = options.gapMs ?? [700, 2500];
  const endMs = durationMs - (options.quietEndMs ?? 2000);
  const random = seededRandom(seed);
  const between = (lo: number, hi: number): number => Math.floor(lo + random() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const totalWeight = WEIGHTS.reduce((s, [, w]) => s + w, 0);
  const kind = (): Exclude<FaultKind, 'groupRestart'> => {
    let r = random() * totalWeight;
    for (const [k, w] of WEIGHTS) if ((r -= w) < 0) return k;
    return WEIGHTS[0]![0];
  };

  const faults: Fault[] = [];
  const restartAt = Math.floor(durationMs * 0.55);
  let restartPlaced = restartAt < startMs || restartAt > endMs;
  for (let at = startMs; at <= endMs; at += between(minGap, maxGap)) {
    if (!restartPlaced && at >= restartAt) {
      faults.push({ atMs: at, kind: 'groupRestart', member: between(0, members - 1) });
      restartPlaced = true;
      continue;
    }
    const member = between(0, members - 1);
    switch (kind()) {
      case 'kill':
        faults.push({ atMs: at, kind: 'kill', member });
        break;
      case 'restart':
        faults.push({ atMs: at, kind: 'restart', member });
        break;
      case 'stop':
        // Half of them end before the group's deadline (the group rides them out), half after.
        faults.push({ atMs: at, kind: 'stop', member, durationMs: random() < 0.5 ? between(100, 600) : between(1500, 3000) });
        break;
      case 'slow':
        faults.push({ atMs: at, kind: 'slow', member, delayMs: between(2, 40), durationMs: between(800, 3000) });
        break;
      case 'error': {
        const sick = random() < 0.25;
        if (sick) {
          // A module that fails everything, probes included, ambiguously: the probe decides.
          faults.push({ atMs: at, kind: 'error', member, ckr: 'CKR_GENERAL_ERROR', durationMs: between(500, 2000) });
        } else {
          const ops = random() < 0.5 ? undefined : [pick(INJECTABLE_OPS), pick(INJECTABLE_OPS)].filter((o, i, a) => a.indexOf(o) === i);
          faults.push({ atMs: at, kind: 'error', member, ckr: pick(INJECTED_CODES), ...(ops ? { ops } : {}), count: between(1, 3), durationMs: 2000 });
        }
        break;
      }
    }
  }
  return faults;
}

/** How many faults of each kind a schedule holds. */
export function countByKind(faults: readonly { readonly kind: FaultKind }[]): Record<FaultKind, number> {
  const counts = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  for (const f of faults) counts[f.kind]++;
  return counts;
}
