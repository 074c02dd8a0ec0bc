/**
 * The `metrics` option: Prometheus metrics through prom-client, an optional peer
 * dependency loaded only when metrics are asked for. Nothing here imports prom-client,
 * so an application without it type-checks and runs.
 */
import { ConfigError } from '../errors/ha-error.js';

/**
 * Where the metrics are registered: a prom-client `Registry` (only these methods are
 * used, so any prom-client 15 registry fits).
 */
export interface MetricsRegistry {
  /** The metrics in the Prometheus text format, for a `/metrics` endpoint. */
  metrics(): Promise<string>;
  getSingleMetric(name: string): unknown;
  removeSingleMetric(name: string): void;
}

/**
 * Options of the group's Prometheus metrics (`metrics: true` takes every default). The
 * metrics are registered when the group opens and removed when it closes; two groups open
 * at once need their own registries or prefixes.
 *
 * @example
 * import { Registry } from 'prom-client';
 * const registry = new Registry();
 * const group = await HaGroup.open({ members, metrics: { registry } });
 * // in the /metrics handler: res.end(await registry.metrics());
 */
export interface MetricsOptions {
  /** The registry to register in. @default prom-client's global registry (`register`) */
  readonly registry?: MetricsRegistry;
  /** Prefix of every metric's name. @default 'pkcs11_ha_' */
  readonly prefix?: string;
  /**
   * Upper bounds of the latency histogram's buckets, in seconds.
   * @default [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
   */
  readonly buckets?: readonly number[];
}

/** {@link MetricsOptions} after defaults and validation. */
export interface ResolvedMetricsOptions {
  /** Undefined: prom-client's global registry. */
  readonly registry: MetricsRegistry | undefined;
  readonly prefix: string;
  readonly buckets: readonly number[];
}

const DEFAULT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Checks the `metrics` option.
 * @throws {@link ConfigError} naming the bad value
 */
export function resolveMetricsOptions(raw: boolean | MetricsOptions | undefined): ResolvedMetricsOptions | undefined {
  if (raw === undefined || raw === false) return undefined;
  if (raw === true) return { registry: undefined, prefix: 'pkcs11_ha_', buckets: DEFAULT_BUCKETS };
  if (typeof raw !== 'object' || raw === null) throw new ConfigError('metrics', `must be a boolean or an object, got ${String(raw)}`);
  const { registry, prefix = 'pkcs11_ha_', buckets = DEFAULT_BUCKETS } = raw;
  if (registry !== undefined && (typeof registry?.metrics !== 'function' || typeof registry.getSingleMetric !== 'function' || typeof registry.removeSingleMetric !== 'function')) {
    throw new ConfigError('metrics.registry', 'must be a prom-client Registry (metrics, getSingleMetric and removeSingleMetric methods)');
  }
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) throw new ConfigError('metrics.prefix', `must be a valid Prometheus name prefix, got ${JSON.stringify(prefix)}`);
  if (!Array.isArray(buckets) || buckets.length === 0 || buckets.some((b, i) => typeof b !== 'number' || !(b > 0) || (i > 0 && b <= buckets[i - 1]!))) {
    throw new ConfigError('metrics.buckets', `must be increasing positive numbers of seconds, got ${JSON.stringify(buckets)}`);
  }
  return { registry, prefix, buckets: [...buckets] };
}
