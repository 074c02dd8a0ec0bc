/**
 * The measurement shared by `limit/<op>/hosts<n>` (bench/limit-hosts.ts, member host
 * processes the group spawns) and `remote/<op>/hosts<n>` (bench/remote.ts, remote TLS
 * member hosts): the virtual slot over an open group, a closed loop of callers with one
 * virtual session each, against the machine's limit (bench/limit.ts), both settled until
 * steady, then measured interleaved; the group's outputs are checked with Node's crypto
 * before and after the timed runs.
 */
import type { ObjectHandle } from '../src/catalog/catalog.js';
import type { HaGroup } from '../src/group/ha-group.js';
import type { VirtualSession } from '../src/slot/virtual-session.js';
import { closedLoop, entry, interleaved, latencyFields, settleUntilSteady, SETTLE_MAX_ROUNDS, SETTLE_MS, spread, summarize, type BenchContext, type LoopTiming, type ResultNote, type BenchResult } from './harness.js';
import { START_DELAY_MS, type MachineLimit } from './limit.js';
import type { KeyedOpName, KeyedOpSpec, OpName, OpSpec } from './ops.js';
import { fmtRate } from './overhead.js';

/** What differs between the families that measure a group against the machine's limit. */
export interface GroupVsLimit {
  /** Members of the group (every key must be held by all of them). */
  readonly members: number;
  /** Closed-loop callers, one virtual session each. */
  readonly callers: number;
  /** Fewest repetitions, whatever `--reps` says (both sides are several busy processes sharing the cores). */
  readonly minReps: number;
  /** The entry's id for an op. */
  readonly idOf: (op: KeyedOpName) => string;
  /** Prefix of error messages, e.g. `limit/hosts2`. */
  readonly tag: string;
  /** Prefix of the result log line, e.g. `limit`. */
  readonly family: string;
  /** The group's side in log lines after its member count, e.g. `hosts` (`2 hosts`). */
  readonly side: string;
  /** The group's side in the note's spreads, e.g. `hosts`. */
  readonly spreadName: string;
  /** The group's members in the note after their count, e.g. `member hosts`. */
  readonly described: string;
  /** Ratio targets. */
  readonly targets: Partial<Record<KeyedOpName, number>>;
  /** More keys of every entry, after the standard ones. */
  readonly extra?: Readonly<Record<string, unknown>>;
}

/** Repetitions of each measurement: `--reps`, at least {@link GroupVsLimit.minReps}. */
export function groupVsLimitReps(spec: Pick<GroupVsLimit, 'minReps'>, ctx: Pick<BenchContext, 'reps'>): number {
  return Math.max(ctx.reps, spec.minReps);
}

/** Planned settling time (s): the limit's processes are steady in two rounds, the group's side takes up to all of its rounds. */
const settleSeconds = (): number => (2 * (SETTLE_MS + START_DELAY_MS) + SETTLE_MAX_ROUNDS * SETTLE_MS) / 1000;

/** Planned seconds of `ops` measured ops after `setupSeconds` of set-up, for the progress plan. */
export function groupVsLimitSeconds(spec: Pick<GroupVsLimit, 'minReps'>, ctx: BenchContext, ops: number, setupSeconds: number): number {
  if (ops === 0) return 0;
  return setupSeconds + ops * (settleSeconds() + groupVsLimitReps(spec, ctx) * ((2 * (ctx.warmupMs + ctx.durationMs) + START_DELAY_MS) / 1000));
}

/** Throws unless every member of the group is active (`what` starts the message). */
export function assertAllServing(group: HaGroup, what: string): void {
  const down = group.status().members.filter((m) => m.state.kind !== 'active');
  if (down.length > 0) throw new Error(`${what}: members not serving after open: ${down.map((m) => `${m.name} (${m.state.kind})`).join(', ')}`);
}

/** What {@link measureGroupVsLimit} measures on: the open group and the limit's pool. */
export interface GroupVsLimitRun {
  readonly ops: readonly KeyedOpName[];
  /** The workloads, from opSpecs over the group's keys. */
  readonly specs: ReadonlyMap<OpName, OpSpec>;
  readonly group: HaGroup;
  /** The user PIN of the group's tokens (its first session logs in). */
  readonly userPin: string;
  readonly limit: MachineLimit;
  /** Set-up seconds of the progress plan, counted once the sessions are open. */
  readonly setupSeconds: number;
}

/**
 * Checks that every member serves, opens one virtual session per caller (the first logs
 * in), and measures every op against the limit, each entry and its note pushed to
 * `results` and `notes`; the progress moves on as {@link groupVsLimitSeconds} planned.
 */
export async function measureGroupVsLimit(ctx: BenchContext, spec: GroupVsLimit, run: GroupVsLimitRun, results: BenchResult[], notes: ResultNote[]): Promise<void> {
  const { group } = run;
  assertAllServing(group, spec.tag);
  const sessions: VirtualSession[] = Array.from({ length: spec.callers }, () => group.slot.openSession());
  await sessions[0]!.login(run.userPin);
  ctx.advance(run.setupSeconds);
  for (const op of run.ops) {
    const { result, note } = await measureOp(ctx, spec, op, run.specs.get(op) as KeyedOpSpec, group, sessions, run.limit);
    results.push(result);
    notes.push(note);
  }
}

/** One op of {@link measureGroupVsLimit}: its entry and note. */
async function measureOp(
  ctx: BenchContext,
  spec: GroupVsLimit,
  op: KeyedOpName,
  opSpec: KeyedOpSpec,
  group: HaGroup,
  sessions: readonly VirtualSession[],
  limit: MachineLimit,
): Promise<{ result: BenchResult; note: ResultNote }> {
  const { members, callers, tag } = spec;
  const id = spec.idOf(op);
  const reps = groupVsLimitReps(spec, ctx);
  const timing: LoopTiming = { durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, signal: ctx.signal };
  const found = await sessions[0]!.findObjects({ label: opSpec.keyLabel, class: opSpec.keyClass });
  if (found.length !== 1) throw new Error(`${tag}: ${found.length} objects labelled ${opSpec.keyLabel}, expected 1`);
  const key: ObjectHandle = found[0]!;
  const holders = group.describeObject(key)?.holders.length ?? 0;
  if (holders !== members) throw new Error(`${tag}: the ${op} key is held by ${holders} members, expected ${members}`);
  const call = async (lane: number): Promise<{ out: Buffer; params: ReturnType<KeyedOpSpec['params']> }> => {
    const params = opSpec.params();
    const mechanism = opSpec.groupMechanism(params);
    const session = sessions[lane]!;
    const out = opSpec.kind === 'encrypt' ? await session.encrypt(mechanism, key, opSpec.data) : await session.sign(mechanism, key, opSpec.data);
    return { out, params };
  };
  /** Every lane's output checked once (every member serves some of them). */
  const verify = async (): Promise<void> => {
    const outs = await Promise.all(sessions.map((_, lane) => call(lane)));
    for (const { out, params } of outs) opSpec.check(out, params);
  };
  await verify();
  // Both sides settle, untimed, until their throughput stops climbing (see
  // settleUntilSteady: a member host's warm-up outlasts one SETTLE_MS).
  const settledLimit = await settleUntilSteady((t) => limit.measure(op, t), ctx.signal);
  const settledGroup = await settleUntilSteady((t) => closedLoop(callers, call, t), ctx.signal);
  ctx.log(`${id} settled: limit ${settledLimit.map(fmtRate).join(' ')} | ${members} ${spec.side} ${settledGroup.map(fmtRate).join(' ')}`);
  ctx.advance(settleSeconds());
  const perRun = (timing.warmupMs + timing.durationMs) / 1000;
  const samples = await interleaved(
    [
      { name: 'limit', measure: () => limit.measure(op, timing).finally(() => ctx.advance(perRun + START_DELAY_MS / 1000)) },
      { name: 'group', measure: () => closedLoop(callers, call, timing).finally(() => ctx.advance(perRun)) },
    ],
    reps,
    ctx.signal,
    (rep, these) => ctx.log(`${id} rep ${rep + 1}/${reps}: limit ${fmtRate(these.get('limit')!.rate)} | ${members} ${spec.side} ${fmtRate(these.get('group')!.rate)}`),
  );
  await verify();
  const limitSamples = samples.get('limit')!;
  const groupSamples = samples.get('group')!;
  const base = summarize(limitSamples);
  const value = summarize(groupSamples);
  const ratio = value.rate / base.rate;
  const result = entry(id, 'ops/s', value.rate, base.rate, { ...latencyFields(value, base), members, callers, processes: limit.processes, ...spec.extra });
  const target = spec.targets[op];
  const note: ResultNote = {
    id,
    note:
      `${members} ${spec.described}, ${callers} callers, vs ${limit.processes} processes with pkcs11js sync calls; spread ${spec.spreadName} ` +
      `${(spread(groupSamples.map((m) => m.rate)) * 100).toFixed(0)} %, limit ${(spread(limitSamples.map((m) => m.rate)) * 100).toFixed(0)} %`,
    ...(target !== undefined ? { target: `>= ${target}`, met: ratio >= target } : {}),
  };
  ctx.log(`${spec.family}: ${id}: ${fmtRate(value.rate)}/s vs the limit's ${fmtRate(base.rate)}/s = ${ratio.toFixed(3)}`);
  return { result, note };
}
