/**
 * The group's Prometheus metrics, on prom-client (an optional peer dependency, imported
 * only when the `metrics` option asks for metrics). Counters and the latency histogram are
 * fed as things happen; the gauges (member state, outstanding, owed, primary) are read
 * from the group's status when the registry is scraped.
 */
import type * as PromClient from 'prom-client';
import { ConfigError } from '../errors/ha-error.js';
import type { MemberStateKind } from '../member/member-state.js';
import type { CommandName } from '../pkcs11/commands.js';
import type { OperationOutcome } from './channels.js';
import type { MetricsRegistry, ResolvedMetricsOptions } from './metrics-options.js';

/** The prom-client module. */
export type PromClientModule = typeof PromClient;

/**
 * Imports prom-client.
 * @param importer how to import it (tests hand in one that fails)
 * @throws {@link ConfigError} naming the package when it is not installed
 */
export async function loadPromClient(importer: () => Promise<unknown> = () => import('prom-client')): Promise<PromClientModule> {
  try {
    const loaded = (await importer()) as PromClientModule & { default?: PromClientModule };
    return typeof loaded.Counter === 'function' ? loaded : loaded.default!;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') throw error;
    throw new ConfigError('metrics', "needs the package 'prom-client' (an optional peer dependency of pkcs11-ha), which is not installed: npm install prom-client");
  }
}

/** What the gauges read at each scrape: the parts of the group's status they show. */
export interface MetricsSource {
  readonly primary: string | undefined;
  readonly members: readonly { readonly name: string; readonly state: { readonly kind: MemberStateKind }; readonly outstanding: number; readonly owed: number }[];
}

const STATES: readonly MemberStateKind[] = ['active', 'standby', 'failed', 'recovering', 'removed'];

type Child = { inc(): void };
type TimedChild = { observe(seconds: number): void };

/** One group's metrics in one registry; {@link close} removes them. */
export class GroupMetrics {
  readonly #registry: MetricsRegistry;
  readonly #names: string[] = [];
  readonly #operations: PromClient.Counter;
  readonly #latency: PromClient.Histogram;
  readonly #failovers: PromClient.Counter;
  readonly #reruns: PromClient.Counter;
  readonly #recoveries: PromClient.Counter;
  readonly #owed: PromClient.Counter;
  readonly #promotions: PromClient.Counter;
  /** Label children by member, command and outcome: the hot path hashes no labels. */
  readonly #children = new Map<string, { readonly count: Child; readonly latency: TimedChild }>();

  /**
   * @throws {@link ConfigError} when the registry already holds a metric of the same name
   *   (another group open on it: give each its own registry or prefix)
   */
  constructor(prom: PromClientModule, options: ResolvedMetricsOptions, source: () => MetricsSource) {
    const registry = (this.#registry = options.registry ?? prom.register);
    const registers = [registry as PromClient.Registry];
    const p = options.prefix;
    for (const name of ['operations_total', 'operation_duration_seconds', 'failovers_total', 'reruns_total', 'recoveries_total', 'owed_records_total', 'standby_promotions_total', 'member_state', 'member_outstanding', 'member_owed_records', 'primary']) {
      if (registry.getSingleMetric(p + name) !== undefined) {
        throw new ConfigError('metrics', `the registry already holds a metric named ${p + name} (another open group?): give each group its own registry or prefix`);
      }
    }
    const counter = (name: string, help: string, labelNames: string[]): PromClient.Counter => {
      this.#names.push(p + name);
      return new prom.Counter({ name: p + name, help, labelNames, registers });
    };
    const gauge = (name: string, help: string, labelNames: string[], collect: (g: PromClient.Gauge, s: MetricsSource) => void): void => {
      this.#names.push(p + name);
      new prom.Gauge({ name: p + name, help, labelNames, registers, collect() { this.reset(); collect(this, source()); } });
    };
    this.#operations = counter('operations_total', 'Commands run on members, by command, member and outcome (ok, error: the member answered with an error, fault: the member failed under it).', ['command', 'member', 'outcome']);
    this.#names.push(p + 'operation_duration_seconds');
    this.#latency = new prom.Histogram({ name: p + 'operation_duration_seconds', help: 'Time of commands on members, by command and member.', labelNames: ['command', 'member'], buckets: [...options.buckets], registers });
    this.#failovers = counter('failovers_total', 'Times a member was taken out of service (its traffic moved to the others).', ['member']);
    this.#reruns = counter('reruns_total', 'Commands run again after failing on a member: elsewhere (another member) or refind (there, objects found again).', ['member', 'step']);
    this.#recoveries = counter('recoveries_total', 'Recovery attempts of failed members, by outcome (recovered, failed).', ['member', 'outcome']);
    this.#owed = counter('owed_records_total', 'Replicas, deletions and attribute changes a member missed and now owes (recorded in the journal).', ['member']);
    this.#promotions = counter('standby_promotions_total', 'Times a standby member was promoted to serve as an active one.', ['member']);
    gauge('member_state', 'Each member state: 1 for the state it is in, 0 for the others.', ['member', 'state'], (g, s) => {
      for (const m of s.members) for (const state of STATES) g.set({ member: m.name, state }, m.state.kind === state ? 1 : 0);
    });
    gauge('member_outstanding', 'Commands queued or running on each member now.', ['member'], (g, s) => {
      for (const m of s.members) g.set({ member: m.name }, m.outstanding);
    });
    gauge('member_owed_records', 'Records each member owes now (settled by its resynchronisation).', ['member'], (g, s) => {
      for (const m of s.members) g.set({ member: m.name }, m.owed);
    });
    gauge('primary', '1 for the primary member, 0 for the others.', ['member'], (g, s) => {
      for (const m of s.members) g.set({ member: m.name }, m.name === s.primary ? 1 : 0);
    });
  }

  /** A command ended on a member after `seconds`. */
  operation(member: string, command: CommandName, outcome: OperationOutcome, seconds: number): void {
    const key = `${member}\u0000${command}\u0000${outcome}`;
    let child = this.#children.get(key);
    if (child === undefined) {
      child = { count: this.#operations.labels({ command, member, outcome }), latency: this.#latency.labels({ command, member }) };
      this.#children.set(key, child);
    }
    child.count.inc();
    child.latency.observe(seconds);
  }

  failover(member: string): void {
    this.#failovers.inc({ member });
  }

  rerun(member: string, step: 'refind' | 'elsewhere'): void {
    this.#reruns.inc({ member, step });
  }

  recovery(member: string, outcome: 'recovered' | 'failed'): void {
    this.#recoveries.inc({ member, outcome });
  }

  owed(member: string): void {
    this.#owed.inc({ member });
  }

  promoted(member: string): void {
    this.#promotions.inc({ member });
  }

  /** Removes this group's metrics from the registry. Idempotent. */
  close(): void {
    for (const name of this.#names.splice(0)) this.#registry.removeSingleMetric(name);
  }
}
