/**
 * The group's wiring to its observers: the `on` listeners attached before anything
 * happens, the Prometheus metrics (prom-client imported only when asked for), the
 * {@link GroupObserver} that events, member commands and reruns pass through, and the
 * status snapshot with its wall-clock times and member host pids.
 */
import type { EventEmitter } from 'eventemitter3';
import type { HaGroupEvents } from '../events/group-events.js';
import { HostTransport } from '../host/host-transport.js';
import type { Member } from '../member/member.js';
import type { Membership } from '../member/membership.js';
import { GroupObserver } from '../observability/group-observer.js';
import { GroupMetrics, loadPromClient, type MetricsSource, type PromClientModule } from '../observability/prometheus.js';
import type { ResolvedGroupConfig } from './group-config.js';
import type { GroupStatus } from './group-status.js';

export type { GroupObserver, PromClientModule };

/** Imports prom-client when the configuration asks for metrics. @throws {@link ConfigError} naming the package when it is missing */
export async function loadMetrics(config: ResolvedGroupConfig): Promise<PromClientModule | undefined> {
  return config.metrics === undefined ? undefined : loadPromClient();
}

/**
 * Attaches the `on` listeners to the group and builds its observer (and metrics).
 * @param status what the metrics' gauges read at a scrape
 * @throws {@link ConfigError} when the registry holds this group's metrics already
 */
export function observeGroup(group: EventEmitter<HaGroupEvents>, config: ResolvedGroupConfig, prom: PromClientModule | undefined, status: () => MetricsSource): GroupObserver {
  // Checked against the event names when resolved; one name's type stands for all here.
  for (const [name, listener] of Object.entries(config.on)) group.on(name as 'memberFailed', listener as HaGroupEvents['memberFailed']);
  const metrics = prom !== undefined && config.metrics !== undefined ? new GroupMetrics(prom, config.metrics, status) : undefined;
  return new GroupObserver({ target: group, clock: config.clock, logger: config.logger, metrics });
}

/** What a status snapshot is made of. */
export interface StatusParts {
  readonly membership: Membership;
  readonly scheduler: string;
  readonly loggedIn: boolean;
  readonly objects: number;
  readonly domain: string | undefined;
  readonly owed: Readonly<Record<string, number>>;
  readonly observer: GroupObserver;
}

/** The pid of the member host serving `member` now: none in process, none while failed or removed. */
function hostPid(member: Member): number | undefined {
  const kind = member.state.kind;
  return member.transport instanceof HostTransport && kind !== 'failed' && kind !== 'removed' ? member.transport.pid : undefined;
}

/** A plain snapshot of the group (see `HaGroup.status`). */
export function groupStatus(p: StatusParts): GroupStatus {
  return {
    time: p.observer.now(),
    primary: p.membership.primary?.name,
    scheduler: p.scheduler,
    loggedIn: p.loggedIn,
    objects: p.objects,
    domain: p.domain,
    owed: p.owed,
    members: p.membership.all.map((m) => ({ ...m.snapshot(), owed: p.owed[m.name] ?? 0, changedAt: p.observer.changedAt(m.name), pid: hostPid(m) })),
  };
}
