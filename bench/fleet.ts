/**
 * fleet/*: several APPLICATION PROCESSES over shared remote member hosts, as a fleet of
 * application servers shares a pool of network HSMs (issue 17). EMULATION: the members are
 * TLS member hosts (the `TlsMemberHost` of `pkcs11-ha host --listen`, on loopback) whose
 * device runs every command through 4 engines held 20 ms each (200 commands/s at most per
 * member), so that the members, not this machine's 2 cores, are the limit. Workload:
 * C_GenerateRandom(32), whose real CPU cost is small against the service time.
 *
 * - `fleet/apps4/members4`: 4 application processes (bench/fleet-app.ts), each with its own
 *   group over the 4 members (default settings for remote members: host-reported load
 *   counted), 8 callers each (2 x engines per member over the fleet), all at once; value =
 *   the sum of their rates, baseline = the members' total capacity, measured: 4 x one
 *   member driven directly by one client (an RpcClient over TLS, no group, 8 callers), in
 *   the same run, interleaved. The ratio says how much of the members' capacity a fleet of
 *   independent load balancers gets. Target >= 0.9.
 * - `fleet/hetero/p99`: one HEAVY application bound to member 1 (its group lists only that
 *   member: a batch job on its own HSM; 24 callers, a queue 5 deep behind each engine) and
 *   three LIGHT ones over all 4 members (4 callers each). value = the light applications'
 *   p99 latency (all their operations pooled) with host-reported load counted
 *   (`countHostLoad: true`, the default), baseline = the same with it off, interleaved; the
 *   ratio on/off says how much the host's report of its other clients' commands spares the
 *   light applications the busy member. Target <= 0.8.
 *
 * The same 4 hosts and 4 application processes serve every variant: each process opens,
 * at start, every group it needs (`all`, and `heavy` or `all-off`).
 */
import { join } from 'node:path';
import type { EmulatedCapacity } from '../src/host/host-ipc.js';
import { RpcClient } from '../src/rpc/rpc-client.js';
import { tlsConnector } from '../src/rpc/tls-stream.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { makeCertificates } from '../src/testbed/tls-certificates.js';
import type { Handle } from '../src/pkcs11/commands.js';
import { describeCapacity } from './emulation.js';
import { epochNow, ForkedChild } from './fork-ipc.js';
// Types only: importing a value would run the child's entry code here.
import type { FleetAppGroup, FleetAppReply, FleetAppRequest } from './fleet-app.js';
import {
  closedLoop,
  entry,
  interleaved,
  median,
  percentile,
  roundMs,
  roundRate,
  roundRatio,
  spread,
  summarize,
  type BenchContext,
  type BenchFamily,
  type BenchResult,
  type LoopTiming,
  type Measurement,
  type ResultNote,
  type Variant,
} from './harness.js';
import { START_DELAY_MS } from './limit.js';
import { fmtRate } from './overhead.js';
import { benchScript } from './paths.js';
import { startEmulatedHost, logHostTails, type BenchTlsHost } from './tls-hosts.js';

/** EMULATION: the capacity of every member. */
export const FLEET_CAPACITY: EmulatedCapacity = { engines: 4, serviceTimeMs: 20 };
const FLEET_RANDOM_BYTES = 32;
const APPS = 4;
const MEMBERS = 4;
/** Callers per application in fleet/apps4/members4: 2 x engines per member over the whole fleet. */
const FLEET_CALLERS = (2 * FLEET_CAPACITY.engines * MEMBERS) / APPS;
/** The heavy application's callers: 6 x its member's engines (a queue 5 deep behind each). */
const HEAVY_CALLERS = 6 * FLEET_CAPACITY.engines;
/** Each light application's callers: the 3 light ones together fill the engines of the 3 members the heavy one leaves. */
const LIGHT_CALLERS = 4;
/** Targets (issue 17). */
export const FLEET_TARGETS = { apps: 0.9, heteroP99: 0.8 } as const;
const APPS_ID = `fleet/apps${APPS}/members${MEMBERS}`;
const HETERO_ID = 'fleet/hetero/p99';
const APP = benchScript('fleet-app');
const READY_TIMEOUT_MS = 120_000;
/** Seconds of set-up (certificates, 4 tokens, 4 hosts, 4 application processes with their groups), for the progress plan. */
const SETUP_SECONDS = 12;

/**
 * Timing of fleet/apps4: quick 0.75 s after 0.25 s (at most), as an emulated member
 * settles within a few service times; full: the run's timing.
 */
function appsTiming(ctx: Pick<BenchContext, 'quick' | 'durationMs' | 'warmupMs' | 'signal'>): LoopTiming {
  return ctx.quick ? { durationMs: Math.min(ctx.durationMs, 750), warmupMs: Math.min(ctx.warmupMs, 250), signal: ctx.signal } : { durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, signal: ctx.signal };
}

/**
 * Timing of fleet/hetero: at least 1.5 s measured after 0.5 s of warm-up. A p99 needs a
 * few hundred operations of the light applications (~200/s each). A busy host reports its
 * load to its idle clients on every heartbeat and a report counts for 3 heartbeat intervals
 * (RpcClient's hostLoadTtlMs), so with host load on a light application should send nothing
 * to the busy member; the window still holds several seconds so that, if reports did age
 * out, the p99 would see their true share, not the luck of where one fell.
 */
function heteroTiming(ctx: Pick<BenchContext, 'durationMs' | 'warmupMs' | 'signal'>): LoopTiming {
  return { durationMs: Math.max(ctx.durationMs, 1500), warmupMs: Math.max(ctx.warmupMs, 500), signal: ctx.signal };
}

/** One application process (bench/fleet-app.ts); it is killed if it has not gone 5 s after close. */
class App extends ForkedChild<FleetAppRequest, FleetAppReply> {
  constructor(readonly index: number) {
    super(APP, `application ${index + 1}`, { serialization: 'advanced', closeGraceMs: 5000 });
  }

  async run(group: string, callers: number, startAt: number, timing: LoopTiming, latencies = false): Promise<Extract<FleetAppReply, { type: 'result' }>> {
    const r = await this.request({ type: 'run', group, callers, bytes: FLEET_RANDOM_BYTES, startAt, warmupMs: timing.warmupMs, durationMs: timing.durationMs, latencies }, START_DELAY_MS + timing.warmupMs + timing.durationMs + 30_000);
    if (r.type !== 'result') throw new Error(`${this.label}: unexpected reply ${r.type}`);
    return r;
  }
}

const startTime = (): number => epochNow() + START_DELAY_MS;

/** A fleet/hetero measurement: the light applications' pooled latencies, and where their commands went. */
interface HeteroMeasurement extends Measurement {
  /** Light operations served by the heavy application's member, as a fraction of theirs. */
  readonly busyShare: number;
  /** The heavy application's rate. */
  readonly heavyRate: number;
}

/** The fleet family (see the file comment). */
export const fleet: BenchFamily = {
  name: 'fleet/',
  ids: () => [APPS_ID, HETERO_ID],

  plannedSeconds(ctx) {
    const apps = ctx.wants(APPS_ID);
    const hetero = ctx.wants(HETERO_ID);
    if (!apps && !hetero) return 0;
    const a = appsTiming(ctx);
    const h = heteroTiming(ctx);
    const per = (t: LoopTiming): number => (t.warmupMs + t.durationMs + START_DELAY_MS) / 1000;
    return SETUP_SECONDS + (apps ? ctx.reps * 2 * per(a) + 1 : 0) + (hetero ? ctx.reps * 2 * per(h) + 1 : 0);
  },

  async run(ctx: BenchContext) {
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    const wantApps = ctx.wants(APPS_ID);
    const wantHetero = ctx.wants(HETERO_ID);
    if (!wantApps && !wantHetero) return { results, notes };
    const aTiming = appsTiming(ctx);
    const hTiming = heteroTiming(ctx);
    const per = (t: LoopTiming): number => (t.warmupMs + t.durationMs + START_DELAY_MS) / 1000;
    ctx.log(
      `fleet: EMULATION, ${APPS} application processes over ${MEMBERS} TLS member hosts of ${describeCapacity(FLEET_CAPACITY)} ` +
        `(${fmtRate((1000 * FLEET_CAPACITY.engines) / FLEET_CAPACITY.serviceTimeMs)}/s at most each), generateRandom(${FLEET_RANDOM_BYTES})`,
    );
    const bed = await createTestbed({ count: MEMBERS, labelPrefix: 'fleet' });
    const untrack = ctx.trackDir(bed.dir);
    const hosts: BenchTlsHost[] = [];
    const apps: App[] = [];
    let alone: RpcClient | undefined;
    try {
      const names = Array.from({ length: APPS }, (_, i) => `app-${i + 1}`);
      const certs = await makeCertificates(join(bed.dir, 'tls'), [...names, 'bench-direct']);
      const started = await Promise.allSettled(bed.tokens.map((t) => startEmulatedHost(t, certs, FLEET_CAPACITY)));
      for (const s of started) if (s.status === 'fulfilled') hosts.push(s.value);
      for (const s of started) if (s.status === 'rejected') throw s.reason;

      const members = (app: number, which: readonly number[]) =>
        which.map((i) => ({ name: bed.tokens[i]!.label, url: hosts[i]!.url, tls: { ca: certs.ca, cert: certs.client(names[app]!).cert, key: certs.client(names[app]!).key } }));
      const everyone = Array.from({ length: MEMBERS }, (_, i) => i);
      for (let i = 0; i < APPS; i++) apps.push(new App(i));
      await Promise.all(
        apps.map((app, i) => {
          const groups: Record<string, FleetAppGroup> = {
            all: { members: members(i, everyone), countHostLoad: true, sessions: Math.max(wantApps ? FLEET_CALLERS : 0, LIGHT_CALLERS) },
          };
          if (wantHetero && i === 0) groups['heavy'] = { members: members(i, [0]), countHostLoad: true, sessions: HEAVY_CALLERS };
          if (wantHetero && i > 0) groups['all-off'] = { members: members(i, everyone), countHostLoad: false, sessions: LIGHT_CALLERS };
          return app.request({ type: 'init', groups }, READY_TIMEOUT_MS);
        }),
      );
      ctx.advance(SETUP_SECONDS);

      if (wantApps) {
        // One member driven directly by one client: what a member can do.
        const direct = certs.client('bench-direct');
        const client = new RpcClient({ member: `${bed.tokens[0]!.label}-direct`, kind: 'tls', connect: tlsConnector({ url: hosts[0]!.url, ca: certs.ca, ...direct }), secret: new Uint8Array(0) });
        alone = client;
        const token = await client.connect();
        const sessions = await Promise.all(Array.from({ length: FLEET_CALLERS }, () => client.execute({ op: 'openSession', slot: token.slot }) as Promise<Handle>));
        const check = (out: Buffer): void => {
          if (out.length !== FLEET_RANDOM_BYTES) throw new Error(`fleet: generateRandom gave ${out.length} bytes, expected ${FLEET_RANDOM_BYTES}`);
        };
        const aloneRun = (t: LoopTiming): Promise<Measurement> =>
          closedLoop(FLEET_CALLERS, async (lane) => check((await client.execute({ op: 'generateRandom', session: sessions[lane]!, length: FLEET_RANDOM_BYTES })) as Buffer), t);
        const fleetRun = async (t: LoopTiming): Promise<Measurement & { perApp: number[]; served: number[] }> => {
          const at = startTime();
          const rs = await Promise.all(apps.map((a) => a.run('all', FLEET_CALLERS, at, t)));
          return {
            rate: rs.reduce((s, r) => s + r.rate, 0),
            p50Ms: median(rs.map((r) => r.p50Ms)),
            p99Ms: Math.max(...rs.map((r) => r.p99Ms)),
            ops: rs.reduce((s, r) => s + r.ops, 0),
            perApp: rs.map((r) => r.rate),
            served: everyone.map((i) => rs.reduce((s, r) => s + r.served[i]!, 0)),
          };
        };
        // Untimed: JIT and connections settle in 5 processes.
        await fleetRun({ durationMs: 500, warmupMs: 500, signal: ctx.signal });
        await aloneRun({ durationMs: 1, warmupMs: 500, signal: ctx.signal });
        ctx.advance(1);
        const samples = await interleaved(
          [
            { name: 'alone', measure: () => aloneRun(aTiming).finally(() => ctx.advance(per(aTiming))) },
            { name: 'fleet', measure: () => fleetRun(aTiming).finally(() => ctx.advance(per(aTiming))) },
          ],
          ctx.reps,
          ctx.signal,
          (rep, these) => ctx.log(`${APPS_ID} rep ${rep + 1}/${ctx.reps}: one member alone ${fmtRate(these.get('alone')!.rate)} | ${APPS} applications ${fmtRate(these.get('fleet')!.rate)}`),
        );
        const aloneSamples = samples.get('alone')!;
        const fleetSamples = samples.get('fleet')! as (Measurement & { perApp: number[]; served: number[] })[];
        const one = summarize(aloneSamples);
        const value = summarize(fleetSamples);
        const middle = [...fleetSamples].sort((a, b) => a.rate - b.rate)[fleetSamples.length >> 1]!;
        const total = middle.served.reduce((a, b) => a + b, 0);
        const ratio = value.rate / (MEMBERS * one.rate);
        results.push(
          entry(APPS_ID, 'ops/s', value.rate, MEMBERS * one.rate, {
            p50Ms: roundMs(value.p50Ms),
            p99Ms: roundMs(value.p99Ms),
            emulation: true,
            apps: APPS,
            members: MEMBERS,
            engines: FLEET_CAPACITY.engines,
            serviceTimeMs: FLEET_CAPACITY.serviceTimeMs,
            callers: FLEET_CALLERS * APPS,
            oneMemberRate: roundRate(one.rate),
            nominalCapacity: (MEMBERS * 1000 * FLEET_CAPACITY.engines) / FLEET_CAPACITY.serviceTimeMs,
            perApp: middle.perApp.map((r) => Math.round(r)),
            shares: middle.served.map((s) => roundRatio(s / total)),
          }),
        );
        notes.push({
          id: APPS_ID,
          note:
            `EMULATION ${describeCapacity(FLEET_CAPACITY)} per member; ${APPS} application processes x ${FLEET_CALLERS} callers over ${MEMBERS} TLS member hosts ` +
            `(host-reported load counted); baseline ${MEMBERS} x one member driven directly (${fmtRate(one.rate)}/s); per application ${middle.perApp.map(fmtRate).join('/')}; ` +
            `spread ${(spread(fleetSamples.map((m) => m.rate)) * 100).toFixed(0)} % (alone ${(spread(aloneSamples.map((m) => m.rate)) * 100).toFixed(0)} %)`,
          target: `>= ${FLEET_TARGETS.apps}`,
          met: ratio >= FLEET_TARGETS.apps,
        });
        ctx.log(`fleet: ${APPS_ID}: ${fmtRate(value.rate)}/s vs ${MEMBERS} x ${fmtRate(one.rate)}/s = ${ratio.toFixed(3)}`);
        await client.close();
        alone = undefined;
      }

      if (wantHetero) {
        const heteroRun = async (light: 'all' | 'all-off', t: LoopTiming): Promise<HeteroMeasurement> => {
          const at = startTime();
          const [heavy, ...lights] = await Promise.all(apps.map((a, i) => (i === 0 ? a.run('heavy', HEAVY_CALLERS, at, t) : a.run(light, LIGHT_CALLERS, at, t, true))));
          const pooled = new Float64Array(lights.reduce((s, r) => s + r.latencies!.length, 0));
          let at0 = 0;
          for (const r of lights) {
            pooled.set(r.latencies!, at0);
            at0 += r.latencies!.length;
          }
          pooled.sort();
          const lightOps = lights.reduce((s, r) => s + r.ops, 0);
          return {
            rate: lights.reduce((s, r) => s + r.rate, 0),
            p50Ms: percentile(pooled, 50),
            p99Ms: percentile(pooled, 99),
            ops: lightOps,
            busyShare: lights.reduce((s, r) => s + r.served[0]!, 0) / Math.max(1, lights.reduce((s, r) => s + r.served.reduce((a, b) => a + b, 0), 0)),
            heavyRate: heavy!.rate,
          };
        };
        await heteroRun('all', { durationMs: 500, warmupMs: 500, signal: ctx.signal });
        ctx.advance(1);
        const samples = await interleaved(
          [
            { name: 'on', measure: () => heteroRun('all', hTiming).finally(() => ctx.advance(per(hTiming))) },
            { name: 'off', measure: () => heteroRun('all-off', hTiming).finally(() => ctx.advance(per(hTiming))) },
          ] satisfies Variant[],
          ctx.reps,
          ctx.signal,
          (rep, these) =>
            ctx.log(
              `${HETERO_ID} rep ${rep + 1}/${ctx.reps}: ` +
                [...these]
                  .map(([name, m]) => `host load ${name}: light p99 ${m.p99Ms.toFixed(1)} ms, p50 ${m.p50Ms.toFixed(1)} ms, ${fmtRate(m.rate)}/s, ${((m as HeteroMeasurement).busyShare * 100).toFixed(1)} % on the busy member`)
                  .join(' | '),
            ),
        );
        const on = samples.get('on')! as HeteroMeasurement[];
        const off = samples.get('off')! as HeteroMeasurement[];
        const mOn = summarize(on);
        const mOff = summarize(off);
        const shareOn = median(on.map((m) => m.busyShare));
        const shareOff = median(off.map((m) => m.busyShare));
        const ratio = mOn.p99Ms / mOff.p99Ms;
        results.push(
          entry(HETERO_ID, 'ms', mOn.p99Ms, mOff.p99Ms, {
            p50Ms: roundMs(mOn.p50Ms),
            baselineP50Ms: roundMs(mOff.p50Ms),
            rate: roundRate(mOn.rate),
            baselineRate: roundRate(mOff.rate),
            busyShare: roundRatio(shareOn),
            baselineBusyShare: roundRatio(shareOff),
            heavyRate: roundRate(median(on.map((m) => m.heavyRate))),
            emulation: true,
            members: MEMBERS,
            heavyCallers: HEAVY_CALLERS,
            lightApps: APPS - 1,
            lightCallers: LIGHT_CALLERS,
          }),
        );
        notes.push({
          id: HETERO_ID,
          note:
            `EMULATION ${describeCapacity(FLEET_CAPACITY)} per member; one heavy application (${HEAVY_CALLERS} callers, bound to member 1) and ${APPS - 1} light ones ` +
            `(${LIGHT_CALLERS} callers each, all ${MEMBERS} members); light p99 with host-reported load on vs off; p50 ${mOn.p50Ms.toFixed(1)} vs ${mOff.p50Ms.toFixed(1)} ms; ` +
            `light operations on the busy member ${(shareOn * 100).toFixed(1)} % vs ${(shareOff * 100).toFixed(1)} %; spread of p99 on ${(spread(on.map((m) => m.p99Ms)) * 100).toFixed(0)} %, off ${(spread(off.map((m) => m.p99Ms)) * 100).toFixed(0)} %`,
          target: `<= ${FLEET_TARGETS.heteroP99}`,
          met: ratio <= FLEET_TARGETS.heteroP99,
        });
        ctx.log(`fleet: ${HETERO_ID}: light p99 ${mOn.p99Ms.toFixed(1)} ms with host load vs ${mOff.p99Ms.toFixed(1)} ms without = ${ratio.toFixed(3)}`);
      }
    } catch (error) {
      logHostTails(hosts, ctx.log, 'fleet');
      throw error;
    } finally {
      await alone?.close().catch(() => undefined);
      await Promise.allSettled(apps.map((a) => a.close()));
      await Promise.allSettled(hosts.map((h) => h.close()));
      await bed.dispose();
      untrack();
    }
    return { results, notes };
  },
};
