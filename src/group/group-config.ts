/**
 * The configuration of an HA group: what a user writes, its defaults, and its
 * validation. Every value has a default where one makes sense and every error names
 * the value's path and echoes the bad value (never a PIN).
 */
import type { Clock } from '../clock/clock.js';
import { systemClock } from '../clock/clock.js';
import { ConfigError } from '../errors/ha-error.js';
import type { MemberRole } from '../member/member-state.js';
import { Secret } from '../member/secret.js';
import { LeastBusyScheduler } from '../routing/least-busy-scheduler.js';
import { PeakEwmaScheduler } from '../routing/peak-ewma-scheduler.js';
import type { Scheduler } from '../routing/scheduler.js';
import type { InProcessCalls, InProcessTransportOptions, TokenSelector } from '../transport/in-process-transport.js';
import type { Transport } from '../transport/transport.js';
import type { UnextractablePolicy } from '../replication/replica-template.js';
import type { HostCalls } from '../host/host-ipc.js';
import type { RecoveryPolicy } from '../recovery/recovery-loop.js';
import type { MultipartMode } from '../slot/multipart-operation.js';
import { DEFAULT_GROUP_REPLAY_BYTES, DEFAULT_OPERATION_REPLAY_BYTES } from '../slot/multipart-session.js';
import { resolveAdminOptions, type AdminOptions } from '../admin/admin-server.js';

/** The built-in load-balancing strategies, by name. */
export type SchedulerName = 'least-busy' | 'peak-ewma';

/** Where members' modules run: a member host child process each, or this process. */
export type TransportKind = 'host' | 'in-process';

/** How a new token key reaches the members (see {@link GroupConfig.keyCreation}). */
export type KeyCreation = 'parallel' | 'primary-first';

/** One member as configured. */
export interface MemberConfig {
  /** A unique name for logs, events and status. @default the token's label or serial */
  readonly name?: string;
  /** The PKCS#11 module: a path, or a path with the environment it reads at C_Initialize. */
  readonly module: string | { readonly path: string; readonly env?: Readonly<Record<string, string>> };
  /** Which token of the module. */
  readonly token: TokenSelector;
  /** Active members take load; standby members are kept current and take load only when no active member is left. @default 'active' */
  readonly role?: MemberRole;
  /** The security officer's PIN, for administrative work (the domain key ceremony). Never logged. */
  readonly soPin?: string;
  /** The user PIN, used to log this member back in after it recovers. Never logged. */
  readonly userPin?: string;
}

/** The configuration given to `HaGroup.open`. */
export interface GroupConfig {
  /** The members, in order: the first serving active member is the primary. */
  readonly members: readonly MemberConfig[];
  /** Worker threads per in-process member. @default 2 */
  readonly threadsPerMember?: number;
  /** Most sessions (= commands in flight) per member. @default 32 */
  readonly maxSessionsPerMember?: number;
  /**
   * The load-balancing strategy: a {@link Scheduler}, or a built-in one by name:
   * `'least-busy'` (Luna's least-busy round-robin) or `'peak-ewma'` (power of two choices
   * over a latency-aware cost). @default 'least-busy'
   */
  readonly scheduler?: Scheduler | SchedulerName;
  /** The clock for all timing. @default the system clock */
  readonly clock?: Clock;
  /**
   * Builds a member's transport (called again for each reconnection); tests hand in
   * fault-injecting ones. `makeDefault` builds what the group would have built from the
   * `transport` option and its settings, for a factory that only wraps it.
   * @default the `transport` option
   */
  readonly transportFactory?: (member: ResolvedMemberConfig, makeDefault: () => Transport) => Transport;
  /**
   * Fewest members a new key must reach; a creation that would leave fewer copies
   * fails (and is rolled back) instead of pretending to be safe. @default 1
   */
  readonly minReplicas?: number;
  /**
   * What a request for CKA_EXTRACTABLE=false gets: `'wrap-with-trusted'` makes the key
   * extractable only under the trusted domain key (so it can be replicated);
   * `'reject'` refuses the request. @default 'wrap-with-trusted'
   */
  readonly unextractableKeys?: UnextractablePolicy;
  /**
   * How a new token key reaches the members. `'parallel'`: the primary makes it as a
   * session object, wraps it under the domain key, and every member (the primary too)
   * unwraps it as a token object at once; a token write is most of a creation's cost, so
   * three members take about the time of one. No copy then has CKA_LOCAL=true.
   * `'primary-first'`: the primary makes the token object itself (its copy has
   * CKA_LOCAL=true), the others copy it after. Objects with CKA_DESTROYABLE=false, copies
   * (copyObject) and session objects are always made primary-first. @default 'parallel'
   */
  readonly keyCreation?: KeyCreation;
  /**
   * Where a member host (`transport: 'host'`) makes short cryptographic calls (encrypt,
   * decrypt, sign, verify, digest). `'inline'`: on the host's main thread as each request
   * is read, one at a time: no thread hop and no re-encoding, which suits a token that
   * computes on this machine's CPU (SoftHSM), with at most one core per member; a call
   * that hangs stops the host's heartbeats, so `deadlineMs` catches it. `'threads'`: on
   * the host's `threadsPerMember` worker threads, in parallel, which suits a token whose
   * calls wait on a network. Long calls (key generation, unwrap, searches) always run on
   * the worker threads, so heartbeats keep flowing while one runs. @default 'inline'
   */
  readonly hostCalls?: HostCalls;
  /**
   * Where an in-process member (`transport: 'in-process'`) makes short cryptographic calls
   * (encrypt, decrypt, sign, verify, digest). `'inline'`: on the calling thread, in slices
   * that hold the event loop for at most about 1 ms before it turns again; when several
   * callers wait, some calls go to the member's worker threads (one per spare core, at
   * most `threadsPerMember`), in parallel. Best for a token that computes on this
   * machine's CPU (SoftHSM): a worker thread that sleeps takes longer to wake than such a
   * call takes. A call that hangs inline hangs the application (no deadline can fire). A
   * kind of call measured longer than 2 ms inline three times in a row goes to the threads
   * (tried inline again after 10 s). `'threads'`: always on the `threadsPerMember` worker
   * threads.
   * @default 'inline'
   */
  readonly inProcessCalls?: InProcessCalls;
  /** File where the journal of what members owe is kept across restarts. @default in memory only */
  readonly journalPath?: string;
  /**
   * Where members' modules run. `'host'`: a member host child process per member, which
   * isolates a crash or hang of the module (the production choice). `'in-process'`: worker
   * threads in this process, the fastest single-process setup, where a crashing module
   * takes the application down. @default 'host'
   */
  readonly transport?: TransportKind;
  /** A command with no answer (and no heartbeat) for this long fails its member (ms). @default 20000 */
  readonly deadlineMs?: number;
  /** No command lives longer than this, heartbeats or not (ms); at least `deadlineMs`. @default 120000 */
  readonly ceilingMs?: number;
  /** A member host sends a heartbeat this often while a command is pending longer (ms); at most a third of `deadlineMs`. @default 1000 */
  readonly heartbeatIntervalMs?: number;
  /** Background recovery of failed members. */
  readonly recovery?: {
    /** Time between a failure and the next attempt (ms). @default 5000 */
    readonly intervalMs?: number;
    /** Most automatic attempts per failure: 0 = off, Infinity = never give up. @default Infinity */
    readonly maxAttempts?: number;
  };
  /**
   * Whether standby members promoted because no active member was left go back to standby
   * when an active member serves again. @default true
   */
  readonly demoteStandbys?: boolean;
  /**
   * Where multi-part operations (encryptInit ... encryptFinal and the like) run: `'primary'`
   * on the primary, as the reference does; `'least-busy'` on the least busy member holding
   * the key at the Init. Either way the operation stays on that member for its life, and is
   * replayed on another holder of the key if that member fails (see `multipartReplay`).
   * @default 'primary'
   */
  readonly multipart?: MultipartMode;
  /**
   * What multi-part operations keep (parts sent, output returned) so that another member can
   * take one up when its member fails. An operation past either bound, or whose result is
   * random (ECDSA, RSA-PSS with a salt), fails with `ERR_OPERATION_RESTART` instead.
   */
  readonly multipartReplay?: {
    /** Bytes one operation keeps at most (0 turns replays off). @default 1048576 (1 MiB) */
    readonly operationBytes?: number;
    /** Bytes all operations of the group keep at once. @default 4194304 (4 MiB) */
    readonly groupBytes?: number;
  };
  /**
   * An admin endpoint for the `pkcs11-ha` CLI (`--connect <socket>`): a Unix socket, mode
   * 0600, removed on close. It accepts no PIN. @default none
   */
  readonly admin?: AdminOptions;
}

/** A member's configuration after defaults and validation. */
export interface ResolvedMemberConfig {
  readonly name: string;
  readonly index: number;
  readonly modulePath: string;
  readonly moduleEnv: Readonly<Record<string, string>>;
  readonly token: TokenSelector;
  readonly role: MemberRole;
  readonly soPin: Secret | undefined;
  readonly userPin: Secret | undefined;
  readonly threads: number;
  /** Where in the config this member is, e.g. `members[2]`. */
  readonly path: string;
}

/** The group's configuration after defaults and validation. */
export interface ResolvedGroupConfig {
  readonly members: readonly ResolvedMemberConfig[];
  readonly maxSessionsPerMember: number;
  readonly scheduler: Scheduler;
  readonly clock: Clock;
  readonly transportFactory: ((member: ResolvedMemberConfig, makeDefault: () => Transport) => Transport) | undefined;
  readonly minReplicas: number;
  readonly unextractableKeys: UnextractablePolicy;
  readonly keyCreation: KeyCreation;
  readonly hostCalls: HostCalls;
  readonly inProcessCalls: InProcessCalls;
  readonly journalPath: string | undefined;
  readonly transport: TransportKind;
  readonly deadlineMs: number;
  readonly ceilingMs: number;
  readonly heartbeatIntervalMs: number;
  readonly recovery: RecoveryPolicy;
  readonly demoteStandbys: boolean;
  readonly multipart: MultipartMode;
  readonly multipartReplay: { readonly operationBytes: number; readonly groupBytes: number };
  readonly admin: AdminOptions | undefined;
}

/** Echoes a bad value for an error message, with anything that looks like a PIN redacted. */
const show = (value: unknown): string => {
  try {
    return JSON.stringify(value, (key, v: unknown) => (/pin|secret|password/i.test(key) ? '<redacted>' : v)) ?? String(value);
  } catch {
    return typeof value;
  }
};

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function integer(value: unknown, path: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(path, `must be an integer from ${min} to ${max}, got ${show(value)}`);
  }
  return value;
}

function pin(value: unknown, path: string): Secret | undefined {
  if (value === undefined) return undefined;
  // Never echo a PIN, not even a malformed one.
  if (typeof value !== 'string' || value.length === 0) throw new ConfigError(path, `must be a non-empty string, got a ${typeof value}`);
  return Secret.of(value);
}

/** The transport options every kind of transport takes for a member (what to load, which token, how many threads). */
export function transportOptions(m: ResolvedMemberConfig): InProcessTransportOptions {
  return { member: m.name, modulePath: m.modulePath, moduleEnv: m.moduleEnv, token: m.token, threads: m.threads, configPath: m.path };
}

/**
 * Validates one member's configuration (also for `group.addMember`).
 * @throws {@link ConfigError} naming the first bad value
 */
export function memberConfig(raw: unknown, index: number, threads: number): ResolvedMemberConfig {
  const path = `members[${index}]`;
  if (!isObject(raw)) throw new ConfigError(path, `must be an object, got ${show(raw)}`);
  const allowed = new Set(['name', 'module', 'token', 'role', 'soPin', 'userPin']);
  for (const key of Object.keys(raw)) if (!allowed.has(key)) throw new ConfigError(`${path}.${key}`, `unknown option (known: ${[...allowed].join(', ')})`);

  let modulePath: unknown;
  let moduleEnv: unknown = {};
  if (typeof raw.module === 'string') modulePath = raw.module;
  else if (isObject(raw.module)) ({ path: modulePath, env: moduleEnv = {} } = raw.module);
  else throw new ConfigError(`${path}.module`, `must be a path or { path, env }, got ${show(raw.module)}`);
  if (typeof modulePath !== 'string' || modulePath.length === 0) throw new ConfigError(`${path}.module.path`, `must be a non-empty string, got ${show(modulePath)}`);
  if (!isObject(moduleEnv) || !Object.values(moduleEnv).every((v) => typeof v === 'string')) {
    throw new ConfigError(`${path}.module.env`, `must map names to strings, got ${show(moduleEnv)}`);
  }

  const token = raw.token;
  let selector: TokenSelector;
  if (isObject(token) && typeof token.label === 'string' && token.label.length > 0 && token.serial === undefined) selector = { label: token.label };
  else if (isObject(token) && typeof token.serial === 'string' && token.serial.length > 0 && token.label === undefined) selector = { serial: token.serial };
  else throw new ConfigError(`${path}.token`, `must be { label } or { serial } (one of them, non-empty), got ${show(token)}`);

  const role = raw.role ?? 'active';
  if (role !== 'active' && role !== 'standby') throw new ConfigError(`${path}.role`, `must be 'active' or 'standby', got ${show(role)}`);

  const name = raw.name ?? ('label' in selector ? selector.label : selector.serial);
  if (typeof name !== 'string' || name.length === 0) throw new ConfigError(`${path}.name`, `must be a non-empty string, got ${show(name)}`);

  return {
    name,
    index,
    modulePath,
    moduleEnv: moduleEnv as Record<string, string>,
    token: selector,
    role,
    soPin: pin(raw.soPin, `${path}.soPin`),
    userPin: pin(raw.userPin, `${path}.userPin`),
    threads,
    path,
  };
}

/**
 * Validates a configuration and fills in defaults.
 * @throws {@link ConfigError} naming the first bad value
 */
export function resolveGroupConfig(config: GroupConfig): ResolvedGroupConfig {
  if (!isObject(config)) throw new ConfigError('config', `must be an object, got ${show(config)}`);
  const allowed = new Set([
    'members',
    'threadsPerMember',
    'maxSessionsPerMember',
    'scheduler',
    'clock',
    'transportFactory',
    'minReplicas',
    'unextractableKeys',
    'keyCreation',
    'hostCalls',
    'inProcessCalls',
    'journalPath',
    'transport',
    'deadlineMs',
    'ceilingMs',
    'heartbeatIntervalMs',
    'recovery',
    'demoteStandbys',
    'multipart',
    'multipartReplay',
    'admin',
  ]);
  for (const key of Object.keys(config)) if (!allowed.has(key)) throw new ConfigError(key, `unknown option (known: ${[...allowed].join(', ')})`);
  if (!Array.isArray(config.members) || config.members.length === 0) {
    throw new ConfigError('members', `must be a non-empty array, got ${show(config.members)}`);
  }
  if (config.members.length > 64) throw new ConfigError('members', `at most 64 members, got ${config.members.length}`);
  const threads = integer(config.threadsPerMember, 'threadsPerMember', 1, 64, 2);
  const members = config.members.map((m, i) => memberConfig(m, i, threads));
  const names = new Set<string>();
  for (const m of members) {
    if (names.has(m.name)) throw new ConfigError(`${m.path}.name`, `duplicate member name ${show(m.name)}`);
    names.add(m.name);
  }
  const clock = config.clock ?? systemClock;
  const named = config.scheduler ?? 'least-busy';
  if (typeof named === 'string' && named !== 'least-busy' && named !== 'peak-ewma') {
    throw new ConfigError('scheduler', `must be 'least-busy', 'peak-ewma' or a Scheduler, got ${show(named)}`);
  }
  // The latency-aware strategy decays with the group's clock: the router times commands with it.
  const scheduler = named === 'least-busy' ? new LeastBusyScheduler() : named === 'peak-ewma' ? new PeakEwmaScheduler({ clock }) : named;
  if (typeof scheduler?.pick !== 'function') throw new ConfigError('scheduler', `must have a pick(candidates) method, got ${show(scheduler)}`);
  if (typeof clock?.now !== 'function' || typeof clock.setTimeout !== 'function' || typeof clock.clearTimeout !== 'function') {
    throw new ConfigError('clock', `must have now, setTimeout and clearTimeout, got ${show(clock)}`);
  }
  if (config.transportFactory !== undefined && typeof config.transportFactory !== 'function') {
    throw new ConfigError('transportFactory', `must be a function, got ${show(config.transportFactory)}`);
  }
  const unextractableKeys = config.unextractableKeys ?? 'wrap-with-trusted';
  if (unextractableKeys !== 'wrap-with-trusted' && unextractableKeys !== 'reject') {
    throw new ConfigError('unextractableKeys', `must be 'wrap-with-trusted' or 'reject', got ${show(unextractableKeys)}`);
  }
  if (config.journalPath !== undefined && (typeof config.journalPath !== 'string' || config.journalPath.length === 0)) {
    throw new ConfigError('journalPath', `must be a non-empty path, got ${show(config.journalPath)}`);
  }
  const transport = config.transport ?? 'host';
  if (transport !== 'host' && transport !== 'in-process') throw new ConfigError('transport', `must be 'host' or 'in-process', got ${show(transport)}`);
  const deadlineMs = integer(config.deadlineMs, 'deadlineMs', 1, 3_600_000, 20_000);
  const ceilingMs = integer(config.ceilingMs, 'ceilingMs', deadlineMs, 86_400_000, Math.max(120_000, deadlineMs));
  // A host's first heartbeat comes one to two intervals after a command starts, and the
  // deadline counts from the start: an interval of at most a third leaves a margin.
  const maxInterval = Math.max(1, Math.floor(deadlineMs / 3));
  const heartbeatIntervalMs = integer(config.heartbeatIntervalMs, 'heartbeatIntervalMs', 1, maxInterval, Math.min(1000, maxInterval));
  const recoveryRaw: unknown = config.recovery ?? {};
  if (!isObject(recoveryRaw)) throw new ConfigError('recovery', `must be an object, got ${show(recoveryRaw)}`);
  for (const key of Object.keys(recoveryRaw)) if (key !== 'intervalMs' && key !== 'maxAttempts') throw new ConfigError(`recovery.${key}`, 'unknown option (known: intervalMs, maxAttempts)');
  const maxAttempts = recoveryRaw.maxAttempts === Infinity ? Infinity : integer(recoveryRaw.maxAttempts, 'recovery.maxAttempts', 0, 1_000_000_000, 0) || (recoveryRaw.maxAttempts === undefined ? Infinity : 0);
  const recovery: RecoveryPolicy = { intervalMs: integer(recoveryRaw.intervalMs, 'recovery.intervalMs', 1, 86_400_000, 5000), maxAttempts };
  const hostCalls = config.hostCalls ?? 'inline';
  if (hostCalls !== 'inline' && hostCalls !== 'threads') throw new ConfigError('hostCalls', `must be 'inline' or 'threads', got ${show(hostCalls)}`);
  const inProcessCalls = config.inProcessCalls ?? 'inline';
  if (inProcessCalls !== 'inline' && inProcessCalls !== 'threads') throw new ConfigError('inProcessCalls', `must be 'inline' or 'threads', got ${show(inProcessCalls)}`);
  const keyCreation = config.keyCreation ?? 'parallel';
  if (keyCreation !== 'parallel' && keyCreation !== 'primary-first') {
    throw new ConfigError('keyCreation', `must be 'parallel' or 'primary-first', got ${show(keyCreation)}`);
  }
  if (config.demoteStandbys !== undefined && typeof config.demoteStandbys !== 'boolean') throw new ConfigError('demoteStandbys', `must be a boolean, got ${show(config.demoteStandbys)}`);
  const multipart = config.multipart ?? 'primary';
  if (multipart !== 'primary' && multipart !== 'least-busy') throw new ConfigError('multipart', `must be 'primary' or 'least-busy', got ${show(multipart)}`);
  const replayRaw: unknown = config.multipartReplay ?? {};
  if (!isObject(replayRaw)) throw new ConfigError('multipartReplay', `must be an object, got ${show(replayRaw)}`);
  for (const key of Object.keys(replayRaw)) if (key !== 'operationBytes' && key !== 'groupBytes') throw new ConfigError(`multipartReplay.${key}`, 'unknown option (known: operationBytes, groupBytes)');
  const multipartReplay = {
    operationBytes: integer(replayRaw.operationBytes, 'multipartReplay.operationBytes', 0, 2 ** 32, DEFAULT_OPERATION_REPLAY_BYTES),
    groupBytes: integer(replayRaw.groupBytes, 'multipartReplay.groupBytes', 0, 2 ** 40, DEFAULT_GROUP_REPLAY_BYTES),
  };
  return {
    multipart,
    multipartReplay,
    members,
    transport,
    deadlineMs,
    ceilingMs,
    heartbeatIntervalMs,
    recovery,
    demoteStandbys: config.demoteStandbys ?? true,
    maxSessionsPerMember: integer(config.maxSessionsPerMember, 'maxSessionsPerMember', 1, 4096, 32),
    scheduler,
    clock,
    transportFactory: config.transportFactory,
    minReplicas: integer(config.minReplicas, 'minReplicas', 1, members.length, 1),
    unextractableKeys,
    keyCreation,
    hostCalls,
    inProcessCalls,
    journalPath: config.journalPath,
    admin: resolveAdminOptions(config.admin),
  };
}
