/**
 * One chaos run (`runChaos`): 3 active + 1 standby member hosts on SoftHSM2 tokens made in
 * a private temporary directory, the mixed load (chaos/load.ts), the seeded fault schedule
 * applied to it (chaos/fault-schedule.ts, chaos/fault-injector.ts), a logout/login every
 * few seconds, and once the group closed and opened again from its journal. Then the group
 * is healed, closed, and the invariants checked against the tokens (chaos/invariants.ts).
 *
 * Temporary files: TMPDIR points into the run's own directory while it runs, so that the
 * member hosts' socket directories land there and anything left behind is seen (and no
 * other process's files are mistaken for ours).
 */
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HaGroup, type GroupConfig, type VirtualSession } from '../src/index.js';
import { INJECT_FAULTS_ENV } from '../src/host/injected-faults.js';
import { createTestbed, type Testbed } from '../src/testbed/softhsm-testbed.js';
import { internalsOf, seededRandom } from '../src/testing.js';
import { diagnoseKey, explainOwed, traceGroup, type GroupTrace } from './diagnose.js';
import { FaultInjector, isLiveChild, type AppliedFault } from './fault-injector.js';
import { faultSchedule, type FaultKind } from './fault-schedule.js';
import { checkInvariants, INVARIANTS, probeTokens, type InvariantName, type RunFacts, type Verdict } from './invariants.js';
import { generateModelKey, Load, resolveModelKey } from './load.js';
import { ChaosModel, errorCode, errorMessage, type Failure, type KeyState, type ModelKey, type OpCategory } from './model.js';

/** Options of {@link runChaos}. */
export interface ChaosOptions {
  /** Seconds of load under faults. */
  readonly durationS: number;
  readonly seed: number;
  /** Load workers (each its own session and keys). @default 4 */
  readonly workers?: number;
  /** Progress lines (faults, phases); none when absent. */
  readonly log?: (line: string) => void;
}

/** The result, in the shape of /work/shared/BENCH-FORMAT.md's chaos result, with details. */
export interface ChaosResult {
  readonly seed: number;
  readonly durationS: number;
  readonly operations: number;
  readonly faults: number;
  readonly errors: number;
  readonly invariants: Record<InvariantName, Verdict>;
  readonly operationsByKind: Record<OpCategory, number>;
  readonly faultsByKind: Record<FaultKind, number>;
  /** Scheduled faults not applied (their member had no live host at their turn). */
  readonly faultsSkipped: number;
  readonly keys: Record<KeyState, number>;
  readonly journalRestart: RunFacts['journalRestart'] | null;
  /** Every failure (stateless and multi-part ones count, unless every member was down). */
  readonly failures: readonly Failure[];
  readonly faultLog: readonly AppliedFault[];
}

const ROLES = ['active', 'active', 'active', 'standby'] as const;

/** Runs the chaos test and checks its invariants. Never throws for a breach: the result says. */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? (() => undefined);
  const durationMs = Math.round(options.durationS * 1000);
  const runDir = mkdtempSync(join(tmpdir(), 'pkcs11-ha-chaos-'));
  const tmp = join(runDir, 'tmp');
  mkdirSync(tmp, { mode: 0o700 });
  const previousTmp = process.env['TMPDIR'];
  process.env['TMPDIR'] = tmp;
  let bed: Testbed | undefined;
  let group: HaGroup | undefined;
  let control: VirtualSession | undefined;
  try {
    bed = await createTestbed({ count: ROLES.length, labelPrefix: 'chaos' });
    const tokens = bed.tokens;
    const pin = tokens[0]!.userPin;
    log(`testbed: ${tokens.length} SoftHSM2 tokens in ${bed.dir}`);
    await HaGroup.initDomain({ members: bed.memberConfigs() });
    const controlPaths = tokens.map((t) => join(runDir, `faults-${t.label}.json`));
    const config: GroupConfig = {
      members: bed.memberConfigs({ roles: [...ROLES] }).map((m, i) => ({ ...m, module: { path: m.module.path, env: { ...m.module.env, [INJECT_FAULTS_ENV]: controlPaths[i]! } } })),
      deadlineMs: 1000,
      heartbeatIntervalMs: 200,
      recovery: { intervalMs: 1000 },
      journalPath: join(runDir, 'journal.json'),
    };
    const fdsBefore = openFds();

    let t0 = performance.now();
    const now = (): number => performance.now() - t0;
    const watch = (g: HaGroup): HaGroup => {
      const at = (): string => `${(now() / 1000).toFixed(1).padStart(6)} s`;
      g.on('memberFailed', (e) => log(`${at()}  event memberFailed ${e.member}: ${e.reason}`));
      g.on('recoveryFailed', (e) => log(`${at()}  event recoveryFailed ${e.member} (attempt ${e.attempt}): ${e.reason}`));
      g.on('memberRecovered', (e) => log(`${at()}  event memberRecovered ${e.member}`));
      // How a recovery goes, so that a slow one can be read: its state changes, and its resync every 5 s at most.
      g.on('memberStateChanged', (e) => {
        if (e.current.kind === 'recovering') log(`${at()}  event recovering ${e.member}`);
      });
      const progressAt = new Map<string, number>();
      g.on('resyncProgress', (e) => {
        if (e.done !== e.total && now() - (progressAt.get(e.member) ?? -Infinity) < 5000) return;
        progressAt.set(e.member, now());
        log(`${at()}  event resync ${e.member}: ${e.done}/${e.total}`);
      });
      return g;
    };
    group = watch(await HaGroup.open(config));
    const traces: GroupTrace[] = [];
    if (process.env['CHAOS_DEBUG']) traces.push(traceGroup(group, now));
    control = group.slot.openSession();
    await control.login(pin);
    const model = new ChaosModel();
    const shared = [];
    for (const kind of ['aes', 'hmac', 'ec'] as const) {
      const id = model.newId(`shared-${kind}`);
      const label = `chaos-shared-${kind}`;
      const made = await generateModelKey(control, kind, label, Buffer.from(id, 'hex'));
      const key = model.add(id, kind, label, 'live');
      key.handle = made.handle;
      if (made.publicHandle !== undefined) key.publicHandle = made.publicHandle;
      shared.push(key);
    }
    log(`group open: 3 active + 1 standby member hosts, 3 shared keys`);

    let exclusive: Promise<unknown> = Promise.resolve();
    /** Pauses of the load (login cycles, the restart) one at a time. */
    const alone = <T>(work: () => Promise<T>): Promise<T> => {
      const run = exclusive.then(work, work);
      exclusive = run.catch(() => undefined);
      return run;
    };
    let journalRestart: RunFacts['journalRestart'];
    const injector: FaultInjector = new FaultInjector({
      group: () => group!,
      controlPaths,
      now,
      // One fault at a time, but a member that takes long to recover must not eat a short run.
      settleMs: Math.min(20_000, durationMs / 4),
      onFault: (f) => log(`${(f.atMs / 1000).toFixed(1).padStart(6)} s  ${f.kind.padEnd(12)} ${f.member}: ${f.detail}`),
      restartGroup: (member) =>
        alone(async () => {
          journalRestart = await restartFromJournal(member);
        }),
    });
    const load = new Load({ model, group: () => group!, down: () => injector.down(), allDown: () => injector.allDown(), now, seed: options.seed, workers: options.workers ?? 4, shared, groupIndex: () => Math.max(0, traces.length - 1),
      ...(process.env['CHAOS_DEBUG'] ? { diagnose: (key: ModelKey) => void diagnoseKey(group!, key, log, traces[traces.length - 1]).catch((error: unknown) => log(`diagnose failed: ${String(error)}`)) } : {}) });

    /** Key changes while `member` is down, then the group closed and opened again from its journal. */
    const restartFromJournal = async (member: number): Promise<NonNullable<RunFacts['journalRestart']>> => {
      const name = internalsOf(group!).members[member]!.name;
      const limit = Date.now() + 5000;
      while (internalsOf(group!).members[member]!.serving && Date.now() < limit) await sleep(10);
      await load.pause();
      try {
        // What the member must owe across the restart: a key made, one made and destroyed, a label changed.
        for (const step of ['made', 'gone'] as const) {
          const id = model.newId(`restart-${step}`);
          const label = `chaos-restart-${step}`;
          const made = await generateModelKey(control!, 'aes', label, Buffer.from(id, 'hex'));
          const key = model.add(id, 'aes', label, 'live');
          key.handle = made.handle;
          model.count('keyManagement');
          if (step === 'gone') {
            await control!.destroyObject(made.handle);
            key.state = 'destroyed';
          } else {
            await control!.setAttributes(made.handle, { label: `${label}-v1` });
            key.label = `${label}-v1`;
            key.labels = new Set([key.label]);
          }
          model.count('keyManagement');
        }
        const owedBefore = sumOwed(group!);
        log(`group restart: ${name} down, ${owedBefore} item(s) owed; closing the group and opening it from its journal`);
        await control!.close();
        await group!.close();
        group = watch(await HaGroup.open(config));
        if (process.env['CHAOS_DEBUG']) traces.push(traceGroup(group, now));
        control = group.slot.openSession();
        await control.login(pin);
        const owedAfterLogin = sumOwed(group);
        const missing: string[] = [];
        for (const key of model.keys.values()) {
          if (key.state !== 'live' && key.state !== 'uncertain') continue;
          const found = await resolveModelKey(control, key);
          const whole = found.keys === 1 && (key.kind !== 'ec' || found.publics === 1);
          if (key.state === 'uncertain' && found.keys === 0) key.state = 'destroyed';
          else if (!whole) missing.push(key.id);
        }
        log(`group restart: ${owedAfterLogin} item(s) owed after the login, ${missing.length} key(s) not found`);
        return { owedBefore, owedAfterLogin, missing };
      } catch (error) {
        return { owedBefore: -1, owedAfterLogin: -1, missing: [], error: `${errorCode(error)}: ${errorMessage(error)}` };
      } finally {
        load.resume(true);
      }
    };

    // Logout and login every few seconds, with the load paused (login state is group-wide).
    let cycling = true;
    const loginRandom = seededRandom(options.seed ^ 0x10901);
    const loginCycles = (async () => {
      while (cycling && !process.env['CHAOS_NO_LOGIN']) {
        await sleep(3000 + Math.floor(loginRandom() * 3000));
        if (!cycling || now() > durationMs - 1000) break;
        await alone(async () => {
          await load.pause();
          try {
            for (const step of ['logout', 'login'] as const) {
              model.count('login');
              try {
                if (step === 'logout') await control!.logout();
                else await control!.login(pin);
              } catch (error) {
                model.failures.push({ atMs: Math.round(now()), category: 'login', op: step, code: errorCode(error), message: errorMessage(error), down: injector.down(), counted: false });
              }
            }
          } finally {
            load.resume();
          }
        });
      }
    })();

    const schedule = faultSchedule(options.seed, durationMs);
    log(`load: ${options.workers ?? 4} workers for ${options.durationS} s, ${schedule.length} faults scheduled (seed ${options.seed})`);
    t0 = performance.now(); // the schedule's offsets count from the start of the load
    load.start();
    // CHAOS_DEBUG=1: the members' states every second, to read a run that goes wrong.
    const states = process.env['CHAOS_DEBUG'] ? setInterval(() => log(`${(now() / 1000).toFixed(1).padStart(6)} s  states ${internalsOf(group!).members.map((m) => `${m.name}=${m.state.kind}${m.state.kind === 'failed' ? `(${m.state.attempts})` : m.state.kind === 'recovering' ? `(${m.state.attempt})` : ''}`).join(' ')}`), 1000) : undefined;
    await injector.run(schedule, durationMs);
    const rest = durationMs - now();
    if (rest > 0) await sleep(rest);
    cycling = false;
    clearInterval(states);
    await loginCycles;
    await alone(() => load.stop());
    log(`load stopped after ${(now() / 1000).toFixed(1)} s: ${model.totalOperations} operations, ${model.failures.length} failure(s)`);

    // Heal: every fault ended, every member recovered, everything owed settled.
    injector.heal();
    const { owedAtEnd, notServingAtEnd } = await heal(group);
    log(`healed: owed ${JSON.stringify(owedAtEnd)}, not serving: ${notServingAtEnd.join(', ') || 'none'}`);

    for (let i = 0; i < ROLES.length; i++) injector.pidOf(i);
    await control.close();
    await group.close();
    group = undefined;
    const leftovers = await settleLeftovers(injector.pids, fdsBefore, tmp, bed.dir);

    const keyFacts = [...model.keys.values()].map((k) => ({ id: k.id, kind: k.kind, state: k.state, labels: k.labels, ...(k.madeAtMs !== undefined ? { madeAtMs: k.madeAtMs } : {}), ...(k.destroyedAtMs !== undefined ? { destroyedAtMs: k.destroyedAtMs } : {}) }));
    const tokenFacts = probeTokens(tokens, keyFacts);
    const counted = model.failures.filter((f) => f.counted);
    const facts: RunFacts = {
      keys: keyFacts,
      tokens: tokenFacts,
      errors: counted.length,
      ...(counted[0] ? { firstError: `${counted[0].op} at ${counted[0].atMs} ms: ${counted[0].code}: ${counted[0].message}` } : {}),
      owedAtEnd,
      notServingAtEnd,
      ...(journalRestart ? { journalRestart } : {}),
      leftovers,
    };
    const invariants = checkInvariants(facts);
    if (process.env['CHAOS_DEBUG']) {
      // The history of every key a breach names, to read it.
      const named = Object.values(invariants).join(' ');
      for (const k of model.keys.values()) {
        const shown = Buffer.from(k.id, 'hex').toString();
        if (k.history === undefined || !named.includes(shown)) continue;
        for (const h of k.history) log(`history ${shown}: ${h}`);
        const made = k.madeIn;
        if (made !== undefined) for (const handle of made.handles) for (const line of traces[made.group]?.(handle) ?? []) log(`trace ${shown} ${handle}: ${line}`);
      }
    }
    const keys = { live: 0, destroyed: 0, failedCreate: 0, uncertain: 0 } satisfies Record<KeyState, number>;
    for (const k of model.keys.values()) keys[k.state]++;
    return {
      seed: options.seed,
      durationS: options.durationS,
      operations: model.totalOperations,
      faults: injector.applied.length,
      errors: counted.length,
      invariants,
      operationsByKind: { ...model.operations },
      faultsByKind: injector.byKind,
      faultsSkipped: injector.skipped,
      keys,
      journalRestart: journalRestart ?? null,
      failures: model.failures,
      faultLog: injector.applied,
    };
  } finally {
    await control?.close().catch(() => undefined);
    await group?.close().catch(() => undefined);
    await bed?.dispose().catch(() => undefined);
    if (previousTmp === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = previousTmp;
    rmSync(runDir, { recursive: true, force: true });
  }
}

function sumOwed(group: HaGroup): number {
  return Object.values(group.status().owed).reduce((a, b) => a + b, 0);
}

/** Recovers every member that does not serve and settles what is owed (bounded). */
async function heal(group: HaGroup): Promise<{ owedAtEnd: Record<string, number>; notServingAtEnd: string[] }> {
  const internals = internalsOf(group);
  const limit = Date.now() + 60_000;
  for (;;) {
    const down = internals.members.filter((m) => !m.serving);
    if (down.length === 0 || Date.now() > limit) break;
    await Promise.allSettled(down.map((m) => group.recover(m.name)));
    if (internals.members.some((m) => !m.serving)) await sleep(200);
  }
  while (sumOwed(group) > 0 && Date.now() < limit) {
    await internals.recovery.repairOwing().catch(() => undefined);
    if (sumOwed(group) > 0) await sleep(200);
  }
  if (process.env['CHAOS_DEBUG'] && sumOwed(group) > 0) await explainOwed(group, (line) => console.log(line));
  return { owedAtEnd: { ...group.status().owed }, notServingAtEnd: internals.members.filter((m) => !m.serving).map((m) => m.name) };
}

/** This process's open file descriptors, with what each points at. */
function openFds(): Map<string, string> {
  const fds = new Map<string, string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      fds.set(fd, readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // closed while listing (the listing's own fd)
    }
  }
  return fds;
}

/**
 * What the run left behind once the group is closed: host processes still alive, file
 * descriptors opened since `before` and still open, and files in the run's TMPDIR besides
 * the test bed. Waits (bounded) for processes and descriptors to go.
 */
async function settleLeftovers(pids: ReadonlySet<number>, before: ReadonlyMap<string, string>, tmp: string, bedDir: string): Promise<RunFacts['leftovers']> {
  const extraFds = (): string[] => [...openFds()].filter(([fd, target]) => before.get(fd) !== target).map(([fd, target]) => `${fd} -> ${target}`);
  const alive = (): number[] => [...pids].filter(isLiveChild);
  const limit = Date.now() + 10_000;
  while ((alive().length > 0 || extraFds().length > 0) && Date.now() < limit) await sleep(50);
  // tsx keeps its compile cache in TMPDIR (tsx-<uid>): the tool's, not the run's.
  const tempFiles = readdirSync(tmp).filter((f) => f !== basename(bedDir) && !/^tsx-\d+$/.test(f));
  return { processes: alive(), fds: extraFds(), tempFiles };
}

/** The invariants in print order, as lines. */
export function invariantLines(result: ChaosResult): string[] {
  return INVARIANTS.map((name) => `  ${result.invariants[name] === 'held' ? 'ok    ' : 'BREACH'} ${name.padEnd(20)} ${result.invariants[name]}`);
}

/** True when the run passed: no counted error and every invariant held. */
export function passed(result: ChaosResult): boolean {
  return result.errors === 0 && Object.values(result.invariants).every((v) => v === 'held');
}
