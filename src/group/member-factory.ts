/**
 * Builds a group's members from their configuration: the transport each one runs on (the
 * group's default, or what the `transportFactory` option makes) and the Member around it.
 */
import { Member, type MemberStateListener } from '../member/member.js';
import type { CommandObserver } from '../member/command-observer.js';
import { HostTransport } from '../host/host-transport.js';
import { InProcessTransport } from '../transport/in-process-transport.js';
import { RpcClient } from '../rpc/rpc-client.js';
import { tlsConnector } from '../rpc/tls-stream.js';
import type { Transport } from '../transport/transport.js';
import { transportOptions, type ResolvedGroupConfig, type ResolvedMemberConfig } from './group-config.js';

/** A member host's stderr lines go to the group's logger, when it has one. */
function hostStderr(m: ResolvedMemberConfig, config: ResolvedGroupConfig): ((line: string) => void) | undefined {
  const logger = config.logger;
  return logger === undefined ? undefined : (line) => logger.warn({ member: m.name, line }, 'pkcs11-ha: member host wrote to stderr');
}

/** The transport the group uses by default for a member (`transport: 'host' | 'in-process'`). */
export function defaultTransport(m: ResolvedMemberConfig, config: ResolvedGroupConfig): Transport {
  // A remote member host: the member-host protocol over mutual TLS; the TLS handshake
  // authenticates, so the hello carries no secret. A reconnection opens a new connection.
  if (m.remote !== undefined) {
    return new RpcClient({ member: m.name, kind: 'tls', connect: tlsConnector(m.remote), secret: new Uint8Array(0), connectTimeoutMs: config.deadlineMs, deadlineMs: config.deadlineMs, clock: config.clock, countHostLoad: config.countHostLoad });
  }
  const options = transportOptions(m);
  return config.transport === 'host'
    ? new HostTransport({ ...options, heartbeatIntervalMs: config.heartbeatIntervalMs, calls: config.hostCalls, onStderr: hostStderr(m, config) })
    : new InProcessTransport({ ...options, calls: config.inProcessCalls });
}

/** A member's transport: the configured factory's, else the default. */
export function memberTransport(m: ResolvedMemberConfig, config: ResolvedGroupConfig): Transport {
  const makeDefault = (): Transport => defaultTransport(m, config);
  return config.transportFactory?.(m, makeDefault) ?? makeDefault();
}

/** A new member, not connected yet; each reconnection gets a fresh transport. */
export function createMember(m: ResolvedMemberConfig, config: ResolvedGroupConfig, onStateChange: MemberStateListener, observer?: CommandObserver): Member {
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
    observer,
  });
}
