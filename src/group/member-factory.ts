/**
 * Builds a group's members from their configuration: the transport each one runs on (the
 * group's default, or what the `transportFactory` option makes) and the Member around it.
 */
import { Member, type MemberStateListener } from '../member/member.js';
import { HostTransport } from '../host/host-transport.js';
import { InProcessTransport } from '../transport/in-process-transport.js';
import type { Transport } from '../transport/transport.js';
import { transportOptions, type ResolvedGroupConfig, type ResolvedMemberConfig } from './group-config.js';

/** The transport the group uses by default for a member (`transport: 'host' | 'in-process'`). */
export function defaultTransport(m: ResolvedMemberConfig, config: ResolvedGroupConfig): Transport {
  const options = transportOptions(m);
  return config.transport === 'host'
    ? new HostTransport({ ...options, heartbeatIntervalMs: config.heartbeatIntervalMs, calls: config.hostCalls })
    : new InProcessTransport({ ...options, calls: config.inProcessCalls });
}

/** A member's transport: the configured factory's, else the default. */
export function memberTransport(m: ResolvedMemberConfig, config: ResolvedGroupConfig): Transport {
  const makeDefault = (): Transport => defaultTransport(m, config);
  return config.transportFactory?.(m, makeDefault) ?? makeDefault();
}

/** A new member, not connected yet; each reconnection gets a fresh transport. */
export function createMember(m: ResolvedMemberConfig, config: ResolvedGroupConfig, onStateChange: MemberStateListener): Member {
  return new Member({
    name: m.name,
    index: m.index,
    role: m.role,
    userPin: m.userPin,
    soPin: m.soPin,
    transport: memberTransport(m, config),
    newTransport: () => memberTransport(m, config),
    maxSessions: config.maxSessionsPerMember,
    deadlineMs: config.deadlineMs,
    ceilingMs: config.ceilingMs,
    clock: config.clock,
    onStateChange,
  });
}
