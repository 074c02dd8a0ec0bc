/**
 * EMULATION helpers shared by the emulated-capacity and scheduler families: member host
 * transports whose host runs every command through a fixed number of engines held for a
 * fixed service time (src/host/capacity-emulator.ts), so that a member behaves like a
 * network HSM of known capacity whatever this machine's cores can do.
 *
 * The group builds them through its `transportFactory`: the group's own config has no
 * per-member emulation option (it is a measurement device, not a production one).
 */
import { transportOptions, type ResolvedMemberConfig } from '../src/group/group-config.js';
import type { TestbedToken } from '../src/testbed/softhsm-testbed.js';
import { HostTransport, type EmulatedCapacity } from '../src/host/host-transport.js';

/**
 * Start timeout of an emulated host. A host takes a third of a CPU-second to start
 * compiled (over a second when the benchmark runs through tsx), and up to 17 start at once
 * on a 2-core machine that others use too: the 30 s default could run out while nothing is
 * wrong.
 */
export const EMULATED_START_TIMEOUT_MS = 120_000;

/**
 * A transport factory for `HaGroup.open({ transportFactory })` that makes every member a
 * member host process with the emulated capacity `capacityOf(member)` returns.
 */
export function emulatedFactory(capacityOf: (member: ResolvedMemberConfig) => EmulatedCapacity): (member: ResolvedMemberConfig) => HostTransport {
  return (m) =>
    new HostTransport({
      ...transportOptions(m),
      emulate: capacityOf(m),
      startTimeoutMs: EMULATED_START_TIMEOUT_MS,
    });
}

/** One emulated member host on `token`, outside any group (a baseline driven directly). */
export function emulatedHost(token: TestbedToken, capacity: EmulatedCapacity, threads: number): HostTransport {
  return new HostTransport({
    member: `${token.label}-alone`,
    modulePath: token.modulePath,
    moduleEnv: token.env,
    token: { label: token.label },
    threads,
    configPath: 'baseline',
    emulate: capacity,
    startTimeoutMs: EMULATED_START_TIMEOUT_MS,
  });
}

/** `4 engines x 20 ms`. */
export function describeCapacity(c: EmulatedCapacity): string {
  return `${c.engines} engine${c.engines === 1 ? '' : 's'} x ${c.serviceTimeMs} ms`;
}
