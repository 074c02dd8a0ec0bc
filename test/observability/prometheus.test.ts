/**
 * The Prometheus metrics on real member host processes and SoftHSM2 tokens: scraped with
 * `registry.metrics()` while a host is killed by its pid under load, they count the
 * failover, the reruns and the recovery; prom-client missing gives a typed error naming it.
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { HaError } from '../../src/errors/ha-error.js';
import { loadPromClient } from '../../src/observability/prometheus.js';
import { standardKeys } from '../../src/testbed/provision.js';
import { hostPid } from '../helpers/host-pid.js';
import { hostGroups } from '../helpers/host-groups.js';
import { until } from '../helpers/until.js';

const KEYS = standardKeys('pm');
const DATA = Buffer.from('metrics');
const hosts = hostGroups(KEYS);

/** The value of one series in the text format, or undefined when it is absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('Prometheus metrics', () => {
  it('a scrape during a failover (a host killed by its pid under load) counts the failover, the reruns and later the recovery', async () => {
    const registry = new Registry();
    const group = await hosts.open({ members: hosts.bed.memberConfigs(), transport: 'host', recovery: { intervalMs: 200 }, metrics: { registry } });
    const [a, b] = group.status().members.map((m) => m.name) as [string, string];
    const session = group.slot.openSession();
    await session.login(hosts.bed.tokens[0]!.userPin);
    const [key] = await session.findObjects({ label: 'pm-hmac' });

    const before = await registry.metrics();
    expect(sample(before, `pkcs11_ha_failovers_total{member="${b}"}`)).toBeUndefined();
    expect(sample(before, `pkcs11_ha_member_state{member="${b}",state="active"}`)).toBe(1);
    expect(sample(before, `pkcs11_ha_primary{member="${a}"}`)).toBe(1);

    // Load on 8 lanes; the member host of b is killed once some signatures are done.
    let stop = false;
    let done = 0;
    const errors: unknown[] = [];
    const lane = async (): Promise<void> => {
      while (!stop) {
        try {
          await session.sign('SHA256_HMAC', key!, DATA);
        } catch (error) {
          errors.push(error);
        }
        done++;
      }
    };
    const lanes = Array.from({ length: 8 }, lane);
    await until(() => done > 200, 'some signatures');
    process.kill(hostPid(group, 1), 'SIGKILL');
    let during = '';
    await until(async () => sample((during = await registry.metrics()), `pkcs11_ha_failovers_total{member="${b}"}`) === 1, 'the failover counted in a scrape');
    const failedThen = group.status().members[1]!.state.kind;
    stop = true;
    await Promise.all(lanes);
    expect(errors).toEqual([]);

    // The scrape taken during the failover: the signatures counted by member and outcome.
    expect(sample(during, `pkcs11_ha_operations_total{command="sign",member="${a}",outcome="ok"}`)).toBeGreaterThan(0);
    expect(sample(during, `pkcs11_ha_operations_total{command="sign",member="${b}",outcome="ok"}`)).toBeGreaterThan(0);
    expect(sample(during, `pkcs11_ha_operation_duration_seconds_count{command="sign",member="${a}"}`)).toBeGreaterThan(0);
    expect(sample(during, `pkcs11_ha_failovers_total{member="${a}"}`)).toBeUndefined();
    if (failedThen === 'failed') expect(sample(during, `pkcs11_ha_member_state{member="${b}",state="failed"}`)).toBe(1);

    // Signatures in flight on the killed host ran again elsewhere (when some were in flight).
    const faults = sample(during, `pkcs11_ha_operations_total{command="sign",member="${b}",outcome="fault"}`) ?? 0;
    expect(sample(during, `pkcs11_ha_reruns_total{member="${b}",step="elsewhere"}`) ?? 0).toBe(faults);

    // The recovery loop brings b back; the recovery is counted and b serves again.
    await until(() => group.status().members[1]!.state.kind === 'active', 'b to recover', 30_000);
    const after = await registry.metrics();
    expect(sample(after, `pkcs11_ha_recoveries_total{member="${b}",outcome="recovered"}`)).toBe(1);
    expect(sample(after, `pkcs11_ha_member_state{member="${b}",state="active"}`)).toBe(1);
    expect(sample(after, `pkcs11_ha_member_outstanding{member="${b}"}`)).toBe(0);
    expect(sample(after, `pkcs11_ha_member_owed_records{member="${b}"}`)).toBe(0);

    // Closing the group takes its metrics out of the registry, so a new group can register.
    await group.close();
    expect(await registry.metrics()).not.toContain('pkcs11_ha_');
  }, 60_000);

  it('two groups open on one registry: the second is refused with ERR_CONFIG unless it has a prefix of its own', async () => {
    const registry = new Registry();
    const members = hosts.bed.memberConfigs().slice(0, 1);
    const first = await HaGroup.open({ members, transport: 'in-process', metrics: { registry } });
    try {
      await expect(HaGroup.open({ members, transport: 'in-process', metrics: { registry } })).rejects.toMatchObject({ code: 'ERR_CONFIG', message: expect.stringContaining('pkcs11_ha_operations_total') });
      const second = await HaGroup.open({ members, transport: 'in-process', metrics: { registry, prefix: 'second_' } });
      expect(await registry.metrics()).toContain('second_operations_total');
      await second.close();
    } finally {
      await first.close();
    }
  });

  it('without prom-client installed, asking for metrics fails with ERR_CONFIG naming the package', async () => {
    const missing = Object.assign(new Error("Cannot find package 'prom-client'"), { code: 'ERR_MODULE_NOT_FOUND' });
    const error = await loadPromClient(() => Promise.reject(missing)).catch((e: unknown) => e);
    expect(HaError.is(error) && error.code).toBe('ERR_CONFIG');
    expect((error as Error).message).toContain("'prom-client'");
    // Other import failures are not disguised.
    const other = new Error('boom');
    await expect(loadPromClient(() => Promise.reject(other))).rejects.toBe(other);
    // The real package loads.
    expect(typeof (await loadPromClient()).Registry).toBe('function');
  });

  it('bad metrics options are refused with ERR_CONFIG naming the value', async () => {
    const members = hosts.bed.memberConfigs().slice(0, 1);
    await expect(HaGroup.open({ members, metrics: { prefix: 'bad prefix' } })).rejects.toMatchObject({ code: 'ERR_CONFIG', path: 'metrics.prefix' });
    await expect(HaGroup.open({ members, metrics: { buckets: [1, 0.5] } })).rejects.toMatchObject({ code: 'ERR_CONFIG', path: 'metrics.buckets' });
    await expect(HaGroup.open({ members, metrics: { registry: {} as never } })).rejects.toMatchObject({ code: 'ERR_CONFIG', path: 'metrics.registry' });
  });
});
