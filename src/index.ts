/**
 * pkcs11-ha: several PKCS#11 tokens joined into one virtual slot, with load balancing,
 * failover and key replication done on the client side.
 *
 * This is the whole public API: what an application, a custom {@link Scheduler} or a
 * custom {@link Transport} needs, and every type their signatures use. The surface is
 * pinned by `etc/pkcs11-ha.api.md` (`npm run api`) and `test/api/public-api.test.ts`.
 * Internals for tests and benchmarks come from `pkcs11-ha/testing`; SoftHSM test tokens
 * from `pkcs11-ha/testbed`.
 *
 * @packageDocumentation
 */

// --- The group, its slot and sessions ---------------------------------------------------
export { HaGroup } from './group/ha-group.js';
export type {
  GroupConfig,
  GroupFileConfig,
  CodeOptions,
  MemberConfig,
  MemberOrder,
  PinSource,
  RemoteMemberConfig,
  ResolvedMemberConfig,
  TransportKind,
  SchedulerName,
  KeyCreation,
} from './group/group-config.js';
export type { AdminOptions } from './admin/admin-server.js';
export type { TlsEndpoint } from './rpc/tls-stream.js';
export type { GroupStatus, MemberStatus, ObjectDescription } from './group/group-status.js';
export type { DomainInitResult } from './replication/domain-ceremony.js';
export type { UnextractablePolicy } from './replication/replica-template.js';
export type { MemberSnapshot } from './member/member.js';
export type { MemberRole, MemberState, MemberStateKind } from './member/member-state.js';
export type { SessionPoolStats } from './member/session-pool.js';
export type { Secret } from './member/secret.js';
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
  GroupEvent,
  MemberConnectFailedEvent,
} from './events/group-events.js';
export { VirtualSlot } from './slot/virtual-slot.js';
export { VirtualSession, type UserType } from './slot/virtual-session.js';
export type { MultipartMode } from './slot/multipart-operation.js';
export type { MechanismLimits, TokenLimits } from './slot/slot-capabilities.js';
export type { ObjectHandle } from './catalog/catalog.js';

// --- Metrics, diagnostics channels and logs -----------------------------------------------
export type { MetricsOptions, MetricsRegistry } from './observability/metrics-options.js';
export type { Logger, LogFn } from './observability/logger.js';
export type { GroupListeners } from './observability/observability-options.js';
export {
  OPERATION_CHANNEL,
  FAILOVER_CHANNEL,
  RECOVERY_CHANNEL,
  type OperationMessage,
  type OperationOutcome,
  type FailoverMessage,
  type RecoveryMessage,
} from './observability/channels.js';

// --- Errors and return codes ------------------------------------------------------------
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
  ReplicationError,
  OperationRestartError,
  CommandError,
  type HaErrorCode,
  type FaultClass,
} from './errors/ha-error.js';
export { JournalError, type JournalFault } from './replication/journal-store.js';
export { DomainError } from './replication/domain-key.js';
export { AdminError, type AdminErrorReason } from './admin/admin-protocol.js';
export { classifyReturnValue, classifyError, type Classification } from './errors/classification.js';
export { ckrName, ckrValue } from './errors/return-codes.js';

// --- Templates and mechanisms -----------------------------------------------------------
export {
  toRawTemplate,
  fromRawAttributes,
  type FriendlyTemplate,
  type FriendlyAttributes,
  type TemplateInput,
  type RawTemplate,
  type RawAttribute,
  type Pkcs11Attribute,
} from './pkcs11/template-codec.js';
export { attributeType, type AttributeName, type ObjectClassName, type KeyTypeName, type CurveName } from './pkcs11/attribute-table.js';
export {
  toMechanism,
  PARAMETER_SHAPES,
  type MechanismInput,
  type FriendlyMechanism,
  type MechanismName,
  type MechanismNameOfShape,
  type NoParameterMechanismName,
  type SimpleMechanismName,
  type RawMechanism,
} from './pkcs11/mechanism-table.js';
export type { HashName, MgfName, KdfName, ParameterShape, RawParameter } from './pkcs11/mechanism-parameters.js';
export type { ConstantName } from './native/pkcs11js.js';

// --- Load balancing and time --------------------------------------------------------------
export type { Scheduler, Candidate } from './routing/scheduler.js';
export { LeastBusyScheduler } from './routing/least-busy-scheduler.js';
export { PeakEwmaScheduler, type PeakEwmaOptions } from './routing/peak-ewma-scheduler.js';
export { systemClock, type Clock, type TimerHandle } from './clock/clock.js';

// --- Transports and the commands they carry ---------------------------------------------
export { CommandFailedError, type Transport, type TokenInfo } from './transport/transport.js';
export { InProcessTransport, type InProcessCalls, type InProcessTransportOptions, type TokenSelector } from './transport/in-process-transport.js';
export { HostTransport, type HostTransportOptions, type HostStats, type EmulatedCapacity } from './host/host-transport.js';
export type { HostCalls } from './host/host-ipc.js';
export type { Command, CommandName, CommandResult, CommandMap, Handle, ObjectKind, ReadAttribute, TokenLimitsRead, WireAttribute, WireError } from './pkcs11/commands.js';
