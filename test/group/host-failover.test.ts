/**
 * Failover with real member host processes on real SoftHSM2 tokens: hosts are killed
 * (SIGKILL) or frozen (SIGSTOP) by their pid while the application works, and the
 * application must see no error for anything another member can serve. Real processes
 * are waited on with bounded polling; deadlines here are short real ones. Recovery on
 * member hosts (a journal read back, a member added online) is in
 * test/recovery/member-recovery.test.ts.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { HaGroup } from '../../src/group/ha-group.js';
import type { GroupConfig } from '../../src/group/group-config.js';
import type { MemberStateKind } from '../../src/member/member-state.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import type { TestbedRole } from '../../src/testbed/softhsm-testbed.js';
import { standardKeys } from '../../src/testbed/provision.js';
import { hostPid as pidOf } from '../helpers/host-pid.js';
import { hostGroups } from '../helpers/host-groups.js';
import { until } from '../helpers/until.js';
import { internalsOf } from '../../src/testing.js';

const KEYS = standardKeys('h');
const HMAC_VALUE = (KEYS.find((k) => k.kind === 'hmac') as { value: Buffer }).value;
const DATA = Buffer.from('host failover');
const EXPECTED_MAC = createHmac('sha256', HMAC_VALUE).update(DATA).digest();

const hosts = hostGroups(KEYS, { initDomain: true });

async function open(options: { roles?: readonly TestbedRole[]; extra?: Partial<GroupConfig> } = {}): Promise<{ group: HaGroup; session: VirtualSession; key: number }> {
  const group = await hosts.open({
    members: hosts.bed.memberConfigs(options.roles ? { roles: options.roles } : undefined),
    transport: 'host',
    recovery: { intervalMs: 100 },
    ...options.extra,
  });
  const session = group.slot.openSession();
  await session.login(hosts.bed.tokens[0]!.userPin);
  const [key] = await session.findObjects({ label: 'h-hmac' });
  expect(key).toBeDefined();
  return { group, session, key: key! };
}

const states = (g: HaGroup): MemberStateKind[] => g.status().members.map((m) => m.state.kind);

/**
 * Runs `total` HMAC signatures, `concurrency` at a time, and calls `at(n)` once when n
 * have completed. Counts failures instead of throwing: the count must be 0.
 */
async function load(session: VirtualSession, key: number, total: number, concurrency: number, hooks: { at: number; run: () => void }[] = []): Promise<{ errors: unknown[]; wrong: number }> {
  let started = 0;
  let done = 0;
  let wrong = 0;
  const errors: unknown[] = [];
  const lane = async (): Promise<void> => {
    while (started < total) {
      started++;
      try {
        const mac = await session.sign('SHA256_HMAC', key, DATA);
        if (!mac.equals(EXPECTED_MAC)) wrong++;
      } catch (error) {
        errors.push(error);
      }
      done++;
      for (const h of hooks) if (done === h.at) h.run();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return { errors, wrong };
}

describe('member host processes', () => {
  it('SIGKILL of a host under load: zero errors, the member is failed at once, and it comes back by itself', async () => {
    // A deadline far beyond the test: only the lost connection can fail the member.
    const { group: g, session, key } = await open({ extra: { deadlineMs: 120_000, recovery: { intervalMs: 100 } } });
    const victim = pidOf(g, 1);
    const reasons: string[] = [];
    g.on('memberFailed', (e) => reasons.push(e.reason));
    const result = await load(session, key, 1500, 16, [{ at: 300, run: () => process.kill(victim, 'SIGKILL') }]);
    expect(result).toEqual({ errors: [], wrong: 0 });
    // Failed by the lost connection or the exit, well before any deadline could pass.
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).not.toMatch(/deadline|ceiling/);
    await until(() => states(g)[1] === 'active', 'member-2 to recover');
    expect(pidOf(g, 1)).not.toBe(victim);
    const served = g.status().members[1]!.served;
    await load(session, key, 60, 6);
    expect(g.status().members[1]!.served).toBeGreaterThan(served);
  }, 60_000);

  it('SIGSTOP of a host under load: failover after the deadline, zero errors', async () => {
    const { group: g, session, key } = await open({ extra: { deadlineMs: 400, heartbeatIntervalMs: 100, recovery: { maxAttempts: 0 } } });
    const victim = pidOf(g, 0);
    const reasons: string[] = [];
    g.on('memberFailed', (e) => reasons.push(e.reason));
    const result = await load(session, key, 1200, 16, [
      {
        at: 200,
        run: () => hosts.freeze(victim),
      },
    ]);
    expect(result).toEqual({ errors: [], wrong: 0 });
    expect(states(g)).toEqual(['failed', 'active', 'active']);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatch(/no answer for \d+ ms \(deadline 400 ms/);
    expect(g.primary).toBe('member-2');
  }, 60_000);

  it('a long command (RSA-4096 key pair) outlives a short deadline thanks to heartbeats', async () => {
    const { group: g, session } = await open({ extra: { deadlineMs: 300, heartbeatIntervalMs: 50 } });
    const failures: string[] = [];
    g.on('memberFailed', (e) => failures.push(`${e.member}: ${e.reason}`));
    const started = Date.now();
    const pair = await session.generateKeyPair(
      'RSA_PKCS_KEY_PAIR_GEN',
      { label: 'h-rsa4096', modulusBits: 4096, publicExponent: Buffer.from([1, 0, 1]), verify: true },
      { label: 'h-rsa4096', sign: true },
    );
    const tookMs = Date.now() - started;
    expect(failures).toEqual([]);
    // Meaningful only when generation took longer than the deadline (it takes seconds here).
    expect(tookMs).toBeGreaterThan(300);
    expect(g.describeObject(pair.privateKey)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
  }, 120_000);

  it('the primary killed during key generation: the call succeeds with the key on every live member, and no stray copy after recovery', async () => {
    const { group: g, session } = await open({ extra: { deadlineMs: 120_000 } });
    const primary = pidOf(g, 0);
    const label = `h-kill-${randomBytes(4).toString('hex')}`;
    const call = session.generateKeyPair(
      'RSA_PKCS_KEY_PAIR_GEN',
      { label, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), token: true, verify: true },
      { label, token: true, sign: true },
    );
    await until(() => internalsOf(g).members[0]!.transport.pending > 0, 'the generation to reach the primary');
    process.kill(primary, 'SIGKILL');
    const outcome = await call.then(
      (pair) => ({ ok: true as const, pair }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    await until(() => states(g).every((s) => s === 'active'), 'the primary to recover');
    // Count the objects under that label on each member, by asking each member directly.
    const counts = await Promise.all(
      internalsOf(g).members.map((m) =>
        m.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: [{ type: 3 /* CKA_LABEL */, value: Buffer.from(label) }] })).then((h) => h.length),
      ),
    );
    if (outcome.ok) {
      expect(counts).toEqual([2, 2, 2]); // public + private on every member
      const data = randomBytes(32);
      const sig = await session.sign('SHA256_RSA_PKCS', outcome.pair.privateKey, data);
      expect(await session.verify('SHA256_RSA_PKCS', outcome.pair.publicKey, data, sig)).toBe(true);
    } else {
      expect(outcome.error).toMatchObject({ code: expect.stringMatching(/^ERR_/) });
      expect(counts).toEqual([0, 0, 0]);
    }
  }, 120_000);

  it('with every active member killed the standby serves, and stops serving when an active one is back', async () => {
    const { group: g, session, key } = await open({ roles: ['active', 'active', 'standby'], extra: { deadlineMs: 120_000, recovery: { intervalMs: 2_000 } } });
    // `served` counts everything the member answered (its login, searches): compare deltas.
    const served = () => g.status().members[2]!.served;
    const idle = served();
    await load(session, key, 100, 8);
    expect(served()).toBe(idle);
    const [a, b] = [pidOf(g, 0), pidOf(g, 1)];
    const result = await load(session, key, 400, 8, [
      {
        at: 100,
        run: () => {
          process.kill(a, 'SIGKILL');
          process.kill(b, 'SIGKILL');
        },
      },
    ]);
    expect(result).toEqual({ errors: [], wrong: 0 });
    expect(served()).toBeGreaterThan(idle);
    await until(() => states(g).join() === 'active,active,standby' && !g.status().members[2]!.promoted, 'the actives to recover');
    const before = served();
    await load(session, key, 100, 8);
    expect(served()).toBe(before);
  }, 60_000);
});
