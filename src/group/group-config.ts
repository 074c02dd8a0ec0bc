/**
 * The configuration of an HA group: what a user writes, its defaults, and its
 * validation. Every value has a default where one makes sense and every error names
 * the value's path and echoes the bad value (never a PIN).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
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
import { resolveObservability, type GroupListeners, type ResolvedObservability } from '../observability/observability-options.js';
import type { Logger } from '../observability/logger.js';
import type { MetricsOptions } from '../observability/metrics-options.js';
import { anyMemberFileSchema, groupFileSchema, parseWith, show, type InferredGroupFileConfig, type InferredMemberFileConfig, type InferredRemoteMemberFileConfig } from './config-schema.js';
import type { TlsEndpoint } from '../rpc/tls-stream.js';

/** The built-in load-balancing strategies, by name. */
export type SchedulerName = 'least-busy' | 'peak-ewma';

/** Where members' modules run: a member host child process each, or this process. */
export type TransportKind = 'host' | 'in-process';

/** How a new token key reaches the members (see {@link GroupFileConfig.keyCreation}). */
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
  readonly soPin?: PinSource;
  /** The user PIN, used to log this member back in after it recovers. Never logged. */
  readonly userPin?: PinSource;
}

/**
 * A member served by a remote member host (`pkcs11-ha host` on another machine), reached
 * over mutual TLS: the host's certificate is checked against `tls.ca` and the URL's host
 * name (or `tls.servername`), and this application proves itself with `tls.cert` and
 * `tls.key`. The host picks the token; each application logs in with its own PIN.
 *
 * @example
 * { url: 'tls://hsm-a.internal:7000', tls: { ca: 'ca.pem', cert: 'app-1.pem', key: 'app-1.key' }, userPin: { env: 'HSM_PIN' } }
 */
export interface RemoteMemberConfig {
  /** A unique name for logs, events and status. @default the URL */
  readonly name?: string;
  /** `tls://host:port` of the member host. */
  readonly url: string;
  /** The files of mutual TLS (PEM), relative to the working directory. */
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string; readonly servername?: string };
  /** As {@link MemberConfig.role}. @default 'active' */
  readonly role?: MemberRole;
  /** As {@link MemberConfig.soPin}. */
  readonly soPin?: PinSource;
  /** As {@link MemberConfig.userPin}. */
  readonly userPin?: PinSource;
}

/**
 * A PIN: the PIN itself, `{ env: 'NAME' }` (read from that environment variable) or
 * `{ file: 'path' }` (the file's first line; a relative path is from the working directory).
 * Variables and files are read when the configuration is resolved. Never printed.
 */
export type PinSource = string | { readonly env: string } | { readonly file: string };

/**
 * The order of the members: `'config'`, as written; or `{ clientId }`, the active members
 * rotated by a stable hash (SHA-256) of the id, standbys keeping their places. The same client
 * id always gives the same order, and different ids spread their primaries over the active
 * members (Luna HA has each client's order set by hand).
 */
export type MemberOrder = 'config' | { readonly clientId: string };

/**
 * The part of a group configuration a JSON file can hold (`pkcs11-ha/config.schema.json`
 * describes it; src/group/config-schema.ts defines and validates it).
 */
export interface GroupFileConfig {
  /** The JSON schema of the file; ignored. */
  readonly $schema?: string;
  /** The members, in order: the first serving active member is the primary (see `memberOrder`). */
  readonly members: readonly (MemberConfig | RemoteMemberConfig)[];
  /**
   * Whether the least-busy scheduler adds, for a remote member, the commands its host
   * reports (in every answer and heartbeat) for other application processes to this
   * process's own count, so that one busy application does not make the others pile onto
   * the same member. A local member host serves only this process. @default true
   */
  readonly countHostLoad?: boolean;
  /** The order of the members. @default 'config' */
  readonly memberOrder?: MemberOrder;
  /** The virtual token's label (C_GetTokenInfo through `pkcs11-ha/pkcs11js`), at most 32 characters. @default 'pkcs11-ha' */
  readonly label?: string;
  /** Worker threads per in-process member. @default 2 */
  readonly threadsPerMember?: number;
  /** Most sessions (= commands in flight) per member. @default 32 */
  readonly maxSessionsPerMember?: number;
  /**
   * The load-balancing strategy by name: `'least-busy'` (Luna's least-busy round-robin) or
   * `'peak-ewma'` (power of two choices over a latency-aware cost). @default 'least-busy'
   */
  readonly scheduler?: SchedulerName;
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
   * A journal shared by every application server of a fleet, instead of `journalPath`:
   * `{ postgres: { connectionString } }` keeps what members owe in PostgreSQL (the schema
   * is created and migrated by the library; the connection string, a PIN-like source, is
   * never printed). A member is repaired by whichever server reaches it first, once.
   * `schema` (default `pkcs11_ha`) names the tables' schema; `refreshIntervalMs` (default
   * 1000) is how often this server reads what the others recorded and settled;
   * `claimTimeoutMs` (default 30000) how long the right to repair a member outlives a server
   * that stops answering PostgreSQL (frozen, cut off) before another server may take it.
   * @default the file (`journalPath`), or in memory only
   */
  readonly journal?: { readonly postgres: { readonly connectionString: PinSource; readonly schema?: string; readonly refreshIntervalMs?: number; readonly claimTimeoutMs?: number } };
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
   * AES-CBC, CBC-PAD, ECB and CTR keep nothing and are taken up whatever their length.
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

/** The options only code can give: objects and functions a file cannot hold. */
export interface CodeOptions {
  /** The load-balancing strategy: a {@link Scheduler}, or a built-in one by name (see {@link GroupFileConfig.scheduler}). @default 'least-busy' */
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
   * Prometheus metrics through prom-client (an optional peer dependency, imported only
   * when this is set; `ERR_CONFIG` naming the package when it is not installed): `true`
   * registers them in prom-client's global registry, or give {@link MetricsOptions} (your
   * own `registry`, a `prefix`). Removed from the registry when the group closes.
   * @default no metrics
   */
  readonly metrics?: boolean | MetricsOptions;
  /** A pino-compatible logger for the library's own lines (never a PIN). @default silent */
  readonly logger?: Logger;
  /**
   * Listeners attached before the members connect, so that they hear what happens while
   * the group opens (`memberConnectFailed`, the first `memberStateChanged` events).
   *
   * @example
   * await HaGroup.open({ members, on: { memberConnectFailed: (e) => alert(e.member, e.reason) } });
   */
  readonly on?: GroupListeners;
}

/** The configuration given to `HaGroup.open`: what a file can hold, and the options only code can give. */
export interface GroupConfig extends Omit<GroupFileConfig, 'scheduler'>, CodeOptions {}

// The interfaces above describe exactly what the zod definition accepts (a compile error otherwise).
type Assert<T extends true> = T;
type _FileConfigMatchesSchema = [
  Assert<InferredGroupFileConfig extends GroupFileConfig ? true : false>,
  Assert<InferredMemberFileConfig extends MemberConfig ? true : false>,
  Assert<InferredRemoteMemberFileConfig extends RemoteMemberConfig ? true : false>,
  Assert<keyof GroupFileConfig extends keyof InferredGroupFileConfig ? true : false>,
];

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
  /** Set for a member on a remote member host (no module here: `modulePath` is empty). */
  readonly remote?: TlsEndpoint;
}

/** The group's configuration after defaults and validation. */
export interface ResolvedGroupConfig extends ResolvedObservability {
  readonly members: readonly ResolvedMemberConfig[];
  readonly label: string | undefined;
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
  readonly countHostLoad: boolean;
  /** The PostgreSQL journal, when configured (see `journal`). */
  readonly journalPostgres: { readonly connectionString: Secret; readonly schema: string | undefined; readonly refreshIntervalMs: number; readonly claimTimeoutMs: number } | undefined;
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

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function integer(value: number | undefined, path: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) throw new ConfigError(path, `must be an integer from ${min} to ${max}, got ${show(value)}`);
  return value;
}

/** The PostgreSQL journal's settings; its connection string read like a PIN (never printed). */
function postgresJournal(file: GroupFileConfig): ResolvedGroupConfig['journalPostgres'] {
  const pg = file.journal?.postgres;
  if (pg === undefined) return undefined;
  if (file.journalPath !== undefined) throw new ConfigError('journal', 'give journalPath (a file) or journal.postgres, not both');
  return { connectionString: pin(pg.connectionString, 'journal.postgres.connectionString')!, schema: pg.schema, refreshIntervalMs: pg.refreshIntervalMs ?? 1000, claimTimeoutMs: pg.claimTimeoutMs ?? 30_000 };
}

/** Reads a PIN from its source. Errors name where it was to come from, never what it is. */
function pin(source: PinSource | undefined, path: string): Secret | undefined {
  if (source === undefined) return undefined;
  if (typeof source === 'string') return Secret.of(source);
  if ('env' in source) {
    const value = process.env[source.env];
    if (value === undefined || value === '') throw new ConfigError(`${path}.env`, `environment variable ${source.env} is not set or empty`);
    return Secret.of(value);
  }
  let text: string;
  try {
    text = readFileSync(source.file, 'utf8');
  } catch (error) {
    throw new ConfigError(`${path}.file`, `cannot read ${show(source.file)} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const first = text.split(/\r?\n/, 1)[0] ?? '';
  if (first === '') throw new ConfigError(`${path}.file`, `${show(source.file)} holds no PIN on its first line`);
  return Secret.of(first);
}

/** The transport options every kind of transport takes for a member (what to load, which token, how many threads). */
export function transportOptions(m: ResolvedMemberConfig): InProcessTransportOptions {
  return { member: m.name, modulePath: m.modulePath, moduleEnv: m.moduleEnv, token: m.token, threads: m.threads, configPath: m.path };
}

function resolveMember(m: MemberConfig | RemoteMemberConfig, index: number, threads: number, path = `members[${index}]`): ResolvedMemberConfig {
  if ('url' in m) {
    const t = m.tls;
    return {
      name: m.name ?? m.url,
      index,
      modulePath: '',
      moduleEnv: {},
      token: { label: m.name ?? m.url },
      role: m.role ?? 'active',
      soPin: pin(m.soPin, `${path}.soPin`),
      userPin: pin(m.userPin, `${path}.userPin`),
      threads,
      path,
      remote: { url: m.url, ca: t.ca, cert: t.cert, key: t.key, ...(t.servername === undefined ? {} : { servername: t.servername }) },
    };
  }
  const token: TokenSelector = 'label' in m.token ? { label: m.token.label } : { serial: m.token.serial };
  return {
    name: m.name ?? ('label' in token ? token.label : token.serial),
    index,
    modulePath: typeof m.module === 'string' ? m.module : m.module.path,
    moduleEnv: typeof m.module === 'string' ? {} : { ...m.module.env },
    token,
    role: m.role ?? 'active',
    soPin: pin(m.soPin, `${path}.soPin`),
    userPin: pin(m.userPin, `${path}.userPin`),
    threads,
    path,
  };
}

/**
 * Validates one member's configuration (also for `group.addMember`).
 * @throws {@link ConfigError} naming the first bad value
 */
export function memberConfig(raw: unknown, index: number, threads: number): ResolvedMemberConfig {
  return resolveMember(parseWith(anyMemberFileSchema, raw, `members[${index}]`), index, threads);
}

/** Where in `0..n-1` a client id's member order starts: a stable hash (SHA-256) of the id. */
export function memberOrderShift(clientId: string, n: number): number {
  return n <= 1 ? 0 : createHash('sha256').update(clientId, 'utf8').digest().readUInt32BE(0) % n;
}

/** The members in the order `order` asks: the active ones rotated for a client id, standbys in place. */
function ordered(members: readonly ResolvedMemberConfig[], order: MemberOrder | undefined): ResolvedMemberConfig[] {
  if (order === undefined || order === 'config') return [...members];
  const active = members.filter((m) => m.role === 'active');
  const shift = memberOrderShift(order.clientId, active.length);
  const rotated = [...active.slice(shift), ...active.slice(0, shift)];
  let next = 0;
  return members.map((m, index) => ({ ...(m.role === 'active' ? rotated[next++]! : m), index }));
}

/**
 * Validates a configuration and fills in defaults. PINs given as `{ env }` or `{ file }` are read here.
 * @throws {@link ConfigError} naming the first bad value
 */
export function resolveGroupConfig(config: GroupConfig): ResolvedGroupConfig {
  if (!isObject(config)) throw new ConfigError('config', `must be an object, got ${show(config)}`);
  const { clock: clockRaw, transportFactory, scheduler: schedulerRaw, metrics, logger, on, ...rest } = config;
  // What a file can hold goes through the schema; a Scheduler object is checked below.
  const fileRaw: Record<string, unknown> = { ...rest };
  if (schedulerRaw !== undefined && !isObject(schedulerRaw)) fileRaw.scheduler = schedulerRaw;
  if (isObject(rest.recovery) && rest.recovery.maxAttempts === Infinity) fileRaw.recovery = { ...rest.recovery, maxAttempts: undefined };
  const file: GroupFileConfig = parseWith(groupFileSchema, fileRaw);

  const threads = file.threadsPerMember ?? 2;
  const names = new Set<string>();
  const inConfigOrder = file.members.map((m, i) => {
    const member = resolveMember(m, i, threads);
    if (names.has(member.name)) throw new ConfigError(`${member.path}.name`, `duplicate member name ${show(member.name)}`);
    names.add(member.name);
    return member;
  });
  const members = ordered(inConfigOrder, file.memberOrder);

  const clock = clockRaw ?? systemClock;
  if (typeof clock?.now !== 'function' || typeof clock.setTimeout !== 'function' || typeof clock.clearTimeout !== 'function') {
    throw new ConfigError('clock', `must have now, setTimeout and clearTimeout, got ${show(clock)}`);
  }
  const named = schedulerRaw ?? 'least-busy';
  // The latency-aware strategy decays with the group's clock: the router times commands with it.
  const scheduler = named === 'least-busy' ? new LeastBusyScheduler() : named === 'peak-ewma' ? new PeakEwmaScheduler({ clock }) : named;
  if (typeof scheduler?.pick !== 'function') throw new ConfigError('scheduler', `must have a pick(candidates) method, got ${show(scheduler)}`);
  if (transportFactory !== undefined && typeof transportFactory !== 'function') {
    throw new ConfigError('transportFactory', `must be a function, got ${show(transportFactory)}`);
  }

  const deadlineMs = file.deadlineMs ?? 20_000;
  const ceilingMs = integer(file.ceilingMs, 'ceilingMs', deadlineMs, 86_400_000, Math.max(120_000, deadlineMs));
  // A host's first heartbeat comes one to two intervals after a command starts, and the
  // deadline counts from the start: an interval of at most a third leaves a margin.
  const maxInterval = Math.max(1, Math.floor(deadlineMs / 3));
  const heartbeatIntervalMs = integer(file.heartbeatIntervalMs, 'heartbeatIntervalMs', 1, maxInterval, Math.min(1000, maxInterval));
  const recovery: RecoveryPolicy = { intervalMs: file.recovery?.intervalMs ?? 5000, maxAttempts: file.recovery?.maxAttempts ?? Infinity };
  return {
    multipart: file.multipart ?? 'primary',
    multipartReplay: {
      operationBytes: file.multipartReplay?.operationBytes ?? DEFAULT_OPERATION_REPLAY_BYTES,
      groupBytes: file.multipartReplay?.groupBytes ?? DEFAULT_GROUP_REPLAY_BYTES,
    },
    members,
    label: file.label,
    transport: file.transport ?? 'host',
    deadlineMs,
    ceilingMs,
    heartbeatIntervalMs,
    recovery,
    demoteStandbys: file.demoteStandbys ?? true,
    maxSessionsPerMember: file.maxSessionsPerMember ?? 32,
    scheduler,
    clock,
    transportFactory,
    minReplicas: integer(file.minReplicas, 'minReplicas', 1, members.length, 1),
    unextractableKeys: file.unextractableKeys ?? 'wrap-with-trusted',
    keyCreation: file.keyCreation ?? 'parallel',
    hostCalls: file.hostCalls ?? 'inline',
    inProcessCalls: file.inProcessCalls ?? 'inline',
    journalPath: file.journalPath,
    countHostLoad: file.countHostLoad ?? true,
    journalPostgres: postgresJournal(file),
    admin: resolveAdminOptions(file.admin),
    ...resolveObservability({ metrics, logger, on }),
  };
}
