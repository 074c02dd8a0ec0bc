/**
 * emulated/members<n> (n in 1, 2, 4, 8, 16): EMULATION of network HSMs. Throughput of the
 * virtual slot over n member hosts that each behave like a device of fixed capacity (4
 * engines, 20 ms per command: 200 commands/s at most per member), against n times the
 * throughput of ONE such member host driven directly (its HostTransport, no group),
 * measured in the same run, interleaved. The ratio says how well the virtual slot scales
 * with members when the members, not this machine's 2 cores, are the limit; the target is
 * 0.95 up to 16 members.
 *
 * Why this shape:
 * - The workload is C_GenerateRandom of 32 bytes: its real CPU cost (tens of microseconds
 *   across the client, the socket and the host) is small against the 20 ms service time,
 *   so 16 members at 200/s each (3,200/s) still fit in this machine's CPU.
 * - 2 x engines callers per member in flight (8 per member, 128 for 16): every engine
 *   stays busy with a queue behind it, so the members are saturated and the figure is
 *   capacity, not caller latency.
 * - One group of 16 member hosts is started once (a host takes about a third of a
 *   CPU-second to start compiled, over a second through tsx; starting 1 + 2 + 4 + 8 + 16
 *   of them would cost many seconds of a quick run).
 *   For n members, members n+1..16 are set standby (`group.setStandby`), which takes them
 *   out of load balancing online (a standby member takes load only when no active member
 *   is left); the warm-up before each measurement lets their last commands drain.
 * - The hosts run one worker thread each (`threadsPerMember: 1`): the emulator bounds the
 *   capacity, a second thread would only cost start time.
 *
 * Entries: value = the group's ops/s, baseline = n x the lone member's ops/s, with the
 * emulation settings, callers, latencies and the lone member's rate as extra fields.
 */
import { HaGroup } from '../src/group/ha-group.js';
import type { VirtualSession } from '../src/slot/virtual-session.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { HostTransport, type EmulatedCapacity } from '../src/host/host-transport.js';
import { describeCapacity, emulatedFactory, emulatedHost } from './emulation.js';
import {
  closedLoop,
  entry,
  interleaved,
  latencyFields,
  spread,
  summarize,
  type BenchContext,
  type BenchFamily,
  type BenchResult,
  type LoopTiming,
  type ResultNote,
  type Variant,
} from './harness.js';
import { fmtRate } from './overhead.js';
import { internalsOf } from '../src/testing.js';
import { cpuDuring, describeShare, type CpuShare } from './cpu-share.js';

/** EMULATION: the capacity of every member (and of the lone baseline member). */
export const EMULATED_CAPACITY: EmulatedCapacity = { engines: 4, serviceTimeMs: 20 };
/** Member counts measured. */
export const EMULATED_MEMBERS = [1, 2, 4, 8, 16] as const;
/** Callers in flight per member: twice its engines, so that a queue waits behind every engine. */
const CALLERS_PER_MEMBER = 2 * EMULATED_CAPACITY.engines;
const RANDOM_BYTES = 32;
/** Seconds of set-up (16 tokens, 17 host processes), for the progress plan. */
const SETUP_SECONDS = 10;

const idOf = (n: number): string => `emulated/members${n}`;

/**
 * Timing of one measurement. Quick: 0.5 s after 0.25 s of warm-up (at most), since an
 * emulated member's throughput is set by its service time and settles within a few of
 * them (0.5 s is 25 service times per caller); full: the run's timing.
 */
export function emulatedTiming(ctx: Pick<BenchContext, 'quick' | 'durationMs' | 'warmupMs' | 'signal'>): LoopTiming {
  return ctx.quick
    ? { durationMs: Math.min(ctx.durationMs, 500), warmupMs: Math.min(ctx.warmupMs, 250), signal: ctx.signal }
    : { durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, signal: ctx.signal };
}

/** The emulated-capacity scaling family (see the file comment). */
export const emulated: BenchFamily = {
  name: 'emulated/',
  ids: () => EMULATED_MEMBERS.map(idOf),

  plannedSeconds(ctx) {
    const wanted = EMULATED_MEMBERS.filter((n) => ctx.wants(idOf(n)));
    if (wanted.length === 0) return 0;
    const t = emulatedTiming(ctx);
    return SETUP_SECONDS + ctx.reps * (1 + wanted.length) * ((t.warmupMs + t.durationMs) / 1000);
  },

  async run(ctx: BenchContext) {
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    const wanted = EMULATED_MEMBERS.filter((n) => ctx.wants(idOf(n)));
    if (wanted.length === 0) return { results, notes };
    const timing = emulatedTiming(ctx);
    const perRun = (timing.warmupMs + timing.durationMs) / 1000;
    const most = Math.max(...wanted);
    ctx.log(
      `emulated: EMULATION, ${most} member hosts and one alone, each ${describeCapacity(EMULATED_CAPACITY)} ` +
        `(${fmtRate((1000 * EMULATED_CAPACITY.engines) / EMULATED_CAPACITY.serviceTimeMs)}/s at most), generateRandom(${RANDOM_BYTES}), ${CALLERS_PER_MEMBER} callers per member`,
    );
    const bed = await createTestbed({ count: most, labelPrefix: 'emu' });
    const untrack = ctx.trackDir(bed.dir);
    const alone = emulatedHost(bed.tokens[0]!, EMULATED_CAPACITY, 1);
    let group: HaGroup | undefined;
    try {
      // Both start at once; whichever fails, the other is still closed in `finally`.
      const aloneToken = alone.connect();
      const opening = HaGroup.open({
        members: bed.memberConfigs(),
        transportFactory: emulatedFactory(() => EMULATED_CAPACITY),
        threadsPerMember: 1,
        // A member failing here is a finding, not something to paper over by restarting it.
        recovery: { maxAttempts: 0 },
      });
      const [connected, opened] = await Promise.allSettled([aloneToken, opening]);
      if (opened.status === 'fulfilled') group = opened.value;
      if (connected.status === 'rejected') throw connected.reason;
      if (opened.status === 'rejected') throw opened.reason;
      const g = opened.value;
      const slot = connected.value.slot;
      const down = g.status().members.filter((m) => m.state.kind !== 'active');
      if (down.length > 0) throw new Error(`emulated: members not serving after open: ${down.map((m) => `${m.name} (${m.state.kind})`).join(', ')}`);
      const failures: string[] = [];
      g.on('memberFailed', (e) => failures.push(`${e.member}: ${e.reason}`));

      const aloneSessions = await Promise.all(Array.from({ length: CALLERS_PER_MEMBER }, () => alone.execute({ op: 'openSession', slot })));
      const sessions: VirtualSession[] = Array.from({ length: CALLERS_PER_MEMBER * most }, () => g.slot.openSession());
      ctx.advance(SETUP_SECONDS);

      const check = (out: Buffer): void => {
        if (out.length !== RANDOM_BYTES) throw new Error(`emulated: generateRandom gave ${out.length} bytes, expected ${RANDOM_BYTES}`);
      };
      /** Members 0..n-1 take load; the others stand by (out of load balancing, still connected). */
      const activate = (n: number): void => {
        g.status().members.forEach((m, i) => g.setStandby(m.name, i >= n));
      };
      const tracked = (v: Variant): Variant => ({
        name: v.name,
        measure: async () => {
          const m = await v.measure();
          ctx.advance(perRun);
          return m;
        },
      });
      const shares = new Map<number, CpuShare[]>();
      const variants: Variant[] = [
        {
          name: 'alone',
          measure: () => closedLoop(CALLERS_PER_MEMBER, async (lane) => check(await alone.execute({ op: 'generateRandom', session: aloneSessions[lane]!, length: RANDOM_BYTES })), timing),
        },
        ...wanted.map(
          (n): Variant => ({
            name: `members${n}`,
            measure: async () => {
              activate(n);
              // Where the CPU goes meanwhile: the group's client, the n hosts at work, the machine's idle time.
              const pids = internalsOf(g).members.slice(0, n).flatMap((m) => (m.transport instanceof HostTransport && m.transport.pid !== undefined ? [m.transport.pid] : []));
              const { result, share } = await cpuDuring(pids, () => closedLoop(CALLERS_PER_MEMBER * n, async (lane) => check(await sessions[lane]!.generateRandom(RANDOM_BYTES)), timing));
              (shares.get(n) ?? shares.set(n, []).get(n)!).push(share);
              return result;
            },
          }),
        ),
      ].map(tracked);

      const samples = await interleaved(variants, ctx.reps, ctx.signal, (rep, these) =>
        ctx.log(`emulated rep ${rep + 1}/${ctx.reps}: ${[...these].map(([name, m]) => `${name} ${fmtRate(m.rate)}`).join(' | ')}`),
      );

      // Evidence that the engines were the limit: the most engines each host held at once
      // over the whole run (a member below its engine count was never saturated).
      const stats = await Promise.all([alone, ...internalsOf(g).members.slice(0, most).map((m) => m.transport)].map((t) => (t instanceof HostTransport ? t.hostStats().catch(() => undefined) : undefined)));
      const maxBusy = stats.map((s) => s?.emulation?.maxBusy ?? Number.NaN);
      const aloneSamples = samples.get('alone')!;
      const one = summarize(aloneSamples);
      for (const n of wanted) {
        const values = samples.get(`members${n}`)!;
        const value = summarize(values);
        const id = idOf(n);
        const ratio = value.rate / (n * one.rate);
        results.push(
          entry(id, 'ops/s', value.rate, n * one.rate, {
            ...latencyFields(value, one),
            emulation: true,
            members: n,
            engines: EMULATED_CAPACITY.engines,
            serviceTimeMs: EMULATED_CAPACITY.serviceTimeMs,
            callers: CALLERS_PER_MEMBER * n,
            oneMemberRate: Math.round(one.rate),
            ...cpuFields(shares.get(n) ?? []),
          }),
        );
        const busy = maxBusy.slice(1, n + 1);
        notes.push({
          id,
          note:
            `EMULATION ${describeCapacity(EMULATED_CAPACITY)}; one member alone ${fmtRate(one.rate)}/s; ${CALLERS_PER_MEMBER * n} callers; ` +
            `spread ${(spread(values.map((m) => m.rate)) * 100).toFixed(0)} % (alone ${(spread(aloneSamples.map((m) => m.rate)) * 100).toFixed(0)} %); ` +
            `most engines held at once over the run: ${Math.min(...busy)}/${EMULATED_CAPACITY.engines} for the least busy of the ${n} members; ` +
            `CPU meanwhile (median): ${medianShare(shares.get(n) ?? [])}` +
            (failures.length > 0 ? `; MEMBER FAILURES during the run: ${failures.join('; ')}` : ''),
          target: '>= 0.95',
          met: ratio >= 0.95,
        });
        ctx.log(`emulated: ${id}: ${fmtRate(value.rate)}/s vs ${n} x ${fmtRate(one.rate)}/s = ${ratio.toFixed(3)}; p99 ${value.p99Ms.toFixed(1)} ms`);
      }
      if (Number.isFinite(maxBusy[0]) && maxBusy[0]! < EMULATED_CAPACITY.engines) ctx.log(`emulated: the lone member never held all its engines (${maxBusy[0]}): it was not saturated`);
    } finally {
      await Promise.allSettled([group?.close(), alone.close()]);
      await bed.dispose();
      untrack();
    }
    return { results, notes };
  },
};

/** The median of each share over the repetitions. */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor(sorted.length / 2)]!;
}

function medianShare(shares: readonly CpuShare[]): string {
  if (shares.length === 0) return 'not measured';
  return describeShare({ client: median(shares.map((s) => s.client)), hosts: median(shares.map((s) => s.hosts)), idle: median(shares.map((s) => s.idle)), cores: shares[0]!.cores });
}

/** Extra entry fields: cores used by the client and the hosts, and idle, medians over the repetitions. */
function cpuFields(shares: readonly CpuShare[]): Record<string, number> {
  if (shares.length === 0) return {};
  const round = (x: number): number => Math.round(x * 100) / 100;
  return { cpuClient: round(median(shares.map((s) => s.client))), cpuHosts: round(median(shares.map((s) => s.hosts))), cpuIdle: round(median(shares.map((s) => s.idle))) };
}
