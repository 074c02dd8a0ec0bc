/**
 * The code options that say how a group is watched: `metrics`, `logger` and `on`
 * (listeners attached before the members connect), checked here.
 */
import { ConfigError } from '../errors/ha-error.js';
import type { HaGroupEvents } from '../events/group-events.js';
import { checkLogger, type Logger } from './logger.js';
import { resolveMetricsOptions, type MetricsOptions, type ResolvedMetricsOptions } from './metrics-options.js';

/** Listeners by event name, for the `on` option of `HaGroup.open`. */
export type GroupListeners = { readonly [K in keyof HaGroupEvents]?: HaGroupEvents[K] };

/** Every event name, to check `on` against. */
const EVENT_NAMES = {
  replicationOwed: true,
  replicaMissed: true,
  memberFailed: true,
  memberConnectFailed: true,
  memberRecovered: true,
  recoveryFailed: true,
  standbyPromoted: true,
  standbyDemoted: true,
  resyncProgress: true,
  memberStateChanged: true,
  primaryChanged: true,
  identityConflict: true,
} satisfies Record<keyof HaGroupEvents, true>;

/** The observability options as given. */
export interface ObservabilityOptions {
  readonly metrics?: boolean | MetricsOptions | undefined;
  readonly logger?: Logger | undefined;
  readonly on?: GroupListeners | undefined;
}

/** The observability options after validation. */
export interface ResolvedObservability {
  readonly metrics: ResolvedMetricsOptions | undefined;
  readonly logger: Logger | undefined;
  readonly on: GroupListeners;
}

/**
 * Checks the observability options.
 * @throws {@link ConfigError} naming the bad value
 */
export function resolveObservability(raw: ObservabilityOptions): ResolvedObservability {
  const on = raw.on ?? {};
  if (typeof on !== 'object' || on === null) throw new ConfigError('on', `must be an object of listeners by event name, got ${String(on)}`);
  for (const [name, listener] of Object.entries(on)) {
    if (!Object.hasOwn(EVENT_NAMES, name)) throw new ConfigError(`on.${name}`, `is not an event of the group (events: ${Object.keys(EVENT_NAMES).join(', ')})`);
    if (typeof listener !== 'function') throw new ConfigError(`on.${name}`, `must be a function, got ${typeof listener}`);
  }
  return { metrics: resolveMetricsOptions(raw.metrics), logger: checkLogger(raw.logger), on };
}
