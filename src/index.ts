/**
 * pkcs11-ha: several PKCS#11 tokens joined into one virtual slot, with load balancing,
 * failover and key replication done on the client side.
 */
export { HaGroup, type GroupStatus, type MemberStatus, type DomainInitResult } from './group/ha-group.js';
export type { GroupConfig, MemberConfig, ResolvedGroupConfig, ResolvedMemberConfig, TransportKind, SchedulerName, KeyCreation } from './group/group-config.js';
export type { HostCalls } from './host/host-protocol.js';
export type { RecoveryPolicy } from './recovery/recovery-loop.js';
export type {
  HaGroupEvents,
  MemberStateChangedEvent,
  PrimaryChangedEvent,
  IdentityConflictEvent,
  ReplicaMissedEvent,
  MemberFailedEvent,
  MemberRecoveredEvent,
  RecoveryFailedEvent,
  StandbyEvent,
  ResyncProgressEvent,
} from './group/group-events.js';
export { VirtualSlot } from './slot/virtual-slot.js';
export { VirtualSession, type UserType } from './slot/virtual-session.js';
export type { ObjectHandle } from './catalog/catalog.js';
export type { MemberSnapshot } from './member/member.js';
export type { MemberRole, MemberState, MemberStateKind } from './member/member-state.js';
export type { SessionPoolStats } from './member/session-pool.js';
export type { Scheduler, Candidate } from './routing/scheduler.js';
export { LeastBusyScheduler } from './routing/least-busy-scheduler.js';
export { PeakEwmaScheduler, seededRandom, type PeakEwmaOptions } from './routing/peak-ewma-scheduler.js';
export { systemClock, type Clock, type TimerHandle } from './clock/clock.js';
export type { Transport, TokenInfo } from './transport/transport.js';
export { CommandFailedError } from './transport/transport.js';
export { InProcessTransport, type InProcessCallCounts, type InProcessCalls, type InProcessTransportOptions, type TokenSelector } from './transport/in-process-transport.js';
export { InlineSlicer, eventLoopTurns, DEFAULT_SLICE_BUDGET_MS, type SliceTiming } from './transport/inline-slicer.js';
export { HostTransport, type HostTransportOptions } from './transport/host-transport.js';
export type { Command, CommandName, CommandResult, CommandMap, Handle, ReadAttribute, WireAttribute, WireError } from './pkcs11/commands.js';
export {
  HaError,
  ConfigError,
  InvalidArgumentError,
  InvalidHandleError,
  ClosedError,
  NoMemberAvailableError,
  MemberUnreachableError,
  DeadlineError,
  Pkcs11Error,
  type HaErrorCode,
  type FaultClass,
} from './errors/ha-error.js';
export { JournalError } from './replication/journal.js';
export { DomainError } from './replication/domain-key.js';
export { classifyReturnValue, classifyError, RETURN_CODE_CLASSES, type Classification } from './errors/classification.js';
export { ckrName, ckrValue } from './errors/return-codes.js';
export {
  toRawTemplate,
  fromRawAttributes,
  toMechanism,
  attributeType,
  type FriendlyTemplate,
  type FriendlyAttributes,
  type TemplateInput,
  type RawTemplate,
  type RawAttribute,
  type MechanismInput,
  type FriendlyMechanism,
} from './pkcs11/templates.js';
