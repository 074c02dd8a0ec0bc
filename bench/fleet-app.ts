/**
 * One application process of the fleet benchmark (bench/fleet.ts), started with
 * child_process.fork: it opens one or more groups over remote (TLS) member hosts, as an
 * application server of a fleet would, and runs closed-loop C_GenerateRandom(32) load
 * through one of them when told, starting at a common instant with the other processes.
 *
 *   parent -> { type: 'init', groups: { <name>: { members, countHostLoad, sessions } } }
 *                                             child -> { type: 'ready' }
 *   parent -> { type: 'run', group, callers, bytes, startAt, warmupMs, durationMs, latencies }
 *                                             child -> { type: 'result', rate, p50Ms, p99Ms, ops, served, latencies? }
 *   parent -> { type: 'close' }               the child closes its groups and exits
 *
 * Any failure answers { type: 'error', message } and the child exits non-zero. `startAt`
 * is an epoch time in ms (performance.timeOrigin + performance.now()). `served` is what
 * each member of the group served during the measured phase (member order).
 */
import { HaGroup } from '../src/group/ha-group.js';
import type { RemoteMemberConfig } from '../src/group/group-config.js';
import type { VirtualSession } from '../src/slot/virtual-session.js';
import { serveParent, waitUntilEpoch } from './fork-ipc.js';
import { closedPhase, LatencyLog, measurement } from './harness.js';

/** One group an application process opens. */
export interface FleetAppGroup {
  readonly members: readonly RemoteMemberConfig[];
  readonly countHostLoad: boolean;
  /** Virtual sessions to open (the most callers a run of this group will have). */
  readonly sessions: number;
}

/** Messages from the parent. */
export type FleetAppRequest =
  | { readonly type: 'init'; readonly groups: Readonly<Record<string, FleetAppGroup>> }
  | {
      readonly type: 'run';
      readonly group: string;
      readonly callers: number;
      /** Bytes of each C_GenerateRandom. */
      readonly bytes: number;
      readonly startAt: number;
      readonly warmupMs: number;
      readonly durationMs: number;
      /** Send every latency of the measured phase back (ms, in completion order). */
      readonly latencies: boolean;
    }
  | { readonly type: 'close' };

/** Messages to the parent. */
export type FleetAppReply =
  | { readonly type: 'ready' }
  | {
      readonly type: 'result';
      readonly rate: number;
      readonly p50Ms: number;
      readonly p99Ms: number;
      readonly ops: number;
      readonly served: readonly number[];
      readonly latencies?: Float64Array;
    }
  | { readonly type: 'error'; readonly message: string };

function reply(message: FleetAppReply): void {
  process.send!(message);
}

const neverAborted = new AbortController().signal;
const groups = new Map<string, { group: HaGroup; sessions: VirtualSession[]; failures: string[] }>();

async function handle(request: FleetAppRequest): Promise<void> {
  switch (request.type) {
    case 'init': {
      for (const [name, spec] of Object.entries(request.groups)) {
        const group = await HaGroup.open({
          members: spec.members,
          countHostLoad: spec.countHostLoad,
          // A member failing here is a finding, not something to paper over by restarting it.
          recovery: { maxAttempts: 0 },
        });
        const failures: string[] = [];
        group.on('memberFailed', (e) => failures.push(`${e.member}: ${e.reason}`));
        groups.set(name, { group, sessions: Array.from({ length: spec.sessions }, () => group.slot.openSession()), failures });
        const down = group.status().members.filter((m) => m.state.kind !== 'active');
        if (down.length > 0) throw new Error(`group ${name}: members not serving after open: ${down.map((m) => `${m.name} (${m.state.kind})`).join(', ')}`);
      }
      reply({ type: 'ready' });
      return;
    }
    case 'run': {
      const g = groups.get(request.group);
      if (g === undefined) throw new Error(`no group ${request.group}`);
      if (request.callers > g.sessions.length) throw new Error(`group ${request.group} has ${g.sessions.length} sessions, ${request.callers} callers asked`);
      await waitUntilEpoch(request.startAt);
      const generate = async (lane: number): Promise<void> => {
        const out = await g.sessions[lane]!.generateRandom(request.bytes);
        if (out.length !== request.bytes) throw new Error(`generateRandom gave ${out.length} bytes, expected ${request.bytes}`);
      };
      if (request.warmupMs > 0) await closedPhase(request.callers, generate, request.warmupMs, new LatencyLog(), neverAborted);
      const before = g.group.status().members.map((m) => m.served);
      const latencies = new LatencyLog();
      const { ops, elapsedMs } = await closedPhase(request.callers, generate, request.durationMs, latencies, neverAborted);
      const served = g.group.status().members.map((m, i) => m.served - before[i]!);
      if (g.failures.length > 0) throw new Error(`member failures in group ${request.group}: ${g.failures.join('; ')}`);
      const m = measurement(ops, elapsedMs, latencies);
      reply({ type: 'result', rate: m.rate, p50Ms: m.p50Ms, p99Ms: m.p99Ms, ops: m.ops, served, ...(request.latencies ? { latencies: latencies.sorted() } : {}) });
      return;
    }
    case 'close':
      await Promise.allSettled([...groups.values()].map((g) => g.group.close()));
      groups.clear();
      process.disconnect();
      return;
  }
}

serveParent('bench/fleet-app', 'bench/fleet', handle, () => {
  void Promise.allSettled([...groups.values()].map((g) => g.group.close())).finally(() => process.exit());
});
process.on('SIGINT', () => undefined); // the parent decides when this process stops
