/**
 * Where the group's events, its members' commands and its reruns pass on their way out:
 * events get their wall-clock time and go to the group's listeners; on the way, each also
 * feeds the Prometheus metrics (when asked for), the diagnostics channels (while someone
 * subscribes) and the logger (when given). The group hands this to its modules as their
 * event sink, to its members as their command observer, and to its failover policy.
 */
import { wallClock, type Clock } from '../clock/clock.js';
import { classifyError } from '../errors/classification.js';
import { HaError, Pkcs11Error } from '../errors/ha-error.js';
import type { EventPayload, GroupEventSink, HaGroupEvents } from '../events/group-events.js';
import type { CommandObserver } from '../member/command-observer.js';
import type { CommandName } from '../pkcs11/commands.js';
import type { FailoverMember } from '../routing/failover-policy.js';
import { failoverChannel, operationChannel, publish, recoveryChannel, type FailoverMessage, type OperationMessage, type OperationOutcome, type RecoveryMessage } from './channels.js';
import type { Logger } from './logger.js';
import type { GroupMetrics } from './prometheus.js';

/** Where stamped events go: the group's own emitter. */
export interface EventTarget {
  emit<K extends keyof HaGroupEvents>(event: K, payload: Parameters<HaGroupEvents[K]>[0]): unknown;
}

/** Collaborators of a {@link GroupObserver}. */
export interface GroupObserverOptions {
  readonly target: EventTarget;
  readonly clock: Clock;
  readonly logger?: Logger | undefined;
  readonly metrics?: GroupMetrics | undefined;
}

type Stamped<K extends keyof HaGroupEvents> = Parameters<HaGroupEvents[K]>[0];

/** The group's way out for events, command timings and reruns. */
export class GroupObserver implements GroupEventSink, CommandObserver {
  readonly #target: EventTarget;
  readonly #clock: Clock;
  readonly #wall: () => number;
  readonly #logger: Logger | undefined;
  readonly #metrics: GroupMetrics | undefined;
  /** When each member entered its current state (wall-clock ms). */
  readonly #changedAt = new Map<string, number>();

  constructor(options: GroupObserverOptions) {
    this.#target = options.target;
    this.#clock = options.clock;
    this.#wall = wallClock(options.clock);
    this.#logger = options.logger;
    this.#metrics = options.metrics;
  }

  /** Wall-clock time now, ms since the Unix epoch, through the group's clock. */
  now(): number {
    return this.#wall();
  }

  /** When member `name` entered its current state (wall-clock ms), if it has changed state since the group opened. */
  changedAt(name: string): number | undefined {
    return this.#changedAt.get(name);
  }

  /** Stamps an event with the time, feeds the metrics, channels and logger, and emits it on the group. */
  emit<K extends keyof HaGroupEvents>(name: K, payload: EventPayload<K>): boolean {
    const event = { ...payload, time: this.#wall() } as Stamped<K>;
    this.#observe(name, event);
    this.#target.emit(name, event);
    return true;
  }

  /** A member command starts: its start time, or -1 while neither metrics nor a subscriber want it. */
  started(): number {
    return this.#metrics !== undefined || operationChannel.hasSubscribers ? this.#clock.now() : -1;
  }

  ended(member: string, command: CommandName, startedAt: number, error: HaError | undefined): void {
    const ms = this.#clock.now() - startedAt;
    const outcome: OperationOutcome = error === undefined ? 'ok' : classifyError(error) === 'member' ? 'fault' : 'error';
    this.#metrics?.operation(member, command, outcome, ms / 1000);
    publish<OperationMessage>(operationChannel, () => ({
      member,
      command,
      outcome,
      durationMs: ms,
      time: this.#wall(),
      ...(error === undefined ? {} : { code: error.code }),
      ...(error instanceof Pkcs11Error ? { returnCode: error.ckr } : {}),
    }));
  }

  /** A command runs again after failing on `member` (the failover policy's `onRerun`). */
  readonly rerun = (member: FailoverMember, step: 'refind' | 'elsewhere', error: unknown): void => {
    const code = HaError.is(error) ? error.code : undefined;
    this.#metrics?.rerun(member.name, step);
    publish<FailoverMessage>(failoverChannel, () => ({ type: 'rerun', member: member.name, step, code, time: this.#wall() }));
    this.#logger?.debug({ member: member.name, step, code }, 'pkcs11-ha: command runs again');
  };

  /**
   * The outcome of connecting the members while the group opens: a `memberConnectFailed`
   * event for each member that could not be connected, and a log line.
   */
  opened(members: readonly { readonly name: string }[], results: readonly PromiseSettledResult<unknown>[]): void {
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') return;
      const error = r.reason as unknown;
      this.emit('memberConnectFailed', { member: members[i]!.name, code: HaError.is(error) ? error.code : 'ERR_MEMBER_UNREACHABLE', reason: error instanceof Error ? error.message : String(error) });
    });
    const connected = results.filter((r) => r.status === 'fulfilled').length;
    if (connected === 0) this.#logger?.error({ members: members.length }, 'pkcs11-ha: no member could be connected, the group does not open');
    else this.#logger?.info({ members: members.length, connected }, 'pkcs11-ha: group opened');
  }

  /** The group closed: its metrics leave the registry. */
  close(): void {
    this.#metrics?.close();
    this.#logger?.info({}, 'pkcs11-ha: group closed');
  }

  #observe<K extends keyof HaGroupEvents>(name: K, event: Stamped<K>): void {
    const e = event as Stamped<keyof HaGroupEvents>;
    const log = this.#logger;
    const time = e.time;
    switch (name) {
      case 'memberStateChanged': {
        const s = e as Stamped<'memberStateChanged'>;
        this.#changedAt.set(s.member, time);
        if (s.current.kind === 'recovering') {
          const attempt = s.current.attempt;
          publish<RecoveryMessage>(recoveryChannel, () => ({ type: 'attempt', member: s.member, attempt, time }));
        }
        log?.debug({ member: s.member, previous: s.previous, current: s.current.kind, ...(s.reason === undefined ? {} : { reason: s.reason }) }, 'pkcs11-ha: member state changed');
        break;
      }
      case 'memberFailed': {
        const s = e as Stamped<'memberFailed'>;
        this.#metrics?.failover(s.member);
        publish<FailoverMessage>(failoverChannel, () => ({ type: 'memberFailed', member: s.member, reason: s.reason, time }));
        log?.warn({ member: s.member, reason: s.reason }, 'pkcs11-ha: member failed, its traffic moves to the others');
        break;
      }
      case 'memberConnectFailed': {
        const s = e as Stamped<'memberConnectFailed'>;
        log?.warn({ member: s.member, code: s.code, reason: s.reason }, 'pkcs11-ha: member could not be connected while the group opened');
        break;
      }
      case 'memberRecovered': {
        const s = e as Stamped<'memberRecovered'>;
        this.#metrics?.recovery(s.member, 'recovered');
        publish<RecoveryMessage>(recoveryChannel, () => ({ type: 'recovered', member: s.member, attempts: s.attempts, time }));
        log?.info({ member: s.member, attempts: s.attempts }, 'pkcs11-ha: member recovered');
        break;
      }
      case 'recoveryFailed': {
        const s = e as Stamped<'recoveryFailed'>;
        this.#metrics?.recovery(s.member, 'failed');
        publish<RecoveryMessage>(recoveryChannel, () => ({ type: 'failed', member: s.member, attempt: s.attempt, reason: s.reason, time }));
        log?.warn({ member: s.member, attempt: s.attempt, reason: s.reason }, 'pkcs11-ha: recovery attempt failed');
        break;
      }
      case 'resyncProgress': {
        const s = e as Stamped<'resyncProgress'>;
        publish<RecoveryMessage>(recoveryChannel, () => ({ type: 'resyncProgress', member: s.member, done: s.done, total: s.total, time }));
        log?.debug({ member: s.member, done: s.done, total: s.total }, 'pkcs11-ha: resynchronising');
        break;
      }
      case 'standbyPromoted':
      case 'standbyDemoted': {
        const s = e as Stamped<'standbyPromoted'>;
        const promoted = name === 'standbyPromoted';
        if (promoted) this.#metrics?.promoted(s.member);
        publish<FailoverMessage>(failoverChannel, () => ({ type: promoted ? 'standbyPromoted' : 'standbyDemoted', member: s.member, time }));
        if (promoted) log?.warn({ member: s.member }, 'pkcs11-ha: standby member promoted: no active member serves');
        else log?.info({ member: s.member }, 'pkcs11-ha: standby member demoted: an active member serves again');
        break;
      }
      case 'primaryChanged': {
        const s = e as Stamped<'primaryChanged'>;
        publish<FailoverMessage>(failoverChannel, () => ({ type: 'primaryChanged', previous: s.previous, current: s.current, time }));
        log?.info({ previous: s.previous, current: s.current }, 'pkcs11-ha: primary changed');
        break;
      }
      case 'replicationOwed': {
        const s = e as Stamped<'replicationOwed'>;
        this.#metrics?.owed(s.member);
        log?.warn({ member: s.member, object: s.object, reason: s.reason }, 'pkcs11-ha: member owes a change (recorded in the journal)');
        break;
      }
      case 'identityConflict': {
        const s = e as Stamped<'identityConflict'>;
        log?.warn({ name: s.name, existing: s.existing, incoming: s.incoming, member: s.member }, 'pkcs11-ha: two objects share a name but not their key');
        break;
      }
      default:
        break;
    }
  }
}
