/**
 * Remote member hosts over mutual TLS: real `pkcs11-ha host` processes on SoftHSM2 tokens,
 * listening on 127.0.0.1 with certificates the test makes, and a group whose members are
 * `{ url: 'tls://...', tls }`. Operations, a host killed under load (failover, then
 * recovery when it is back), a long command kept alive by heartbeats (and a deadline too
 * short for them refused), and every handshake failure refused and logged while the host
 * serves the others.
 */
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { GroupConfig, RemoteMemberConfig } from '../../src/group/group-config.js';
import { RpcClient } from '../../src/rpc/rpc-client.js';
import { tlsConnector } from '../../src/rpc/tls-stream.js';
import { provisionKeys, standardKeys } from '../../src/testbed/provision.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';
import { makeCertificates, type TestCertificates } from '../helpers/tls-certificates.js';
import { startTlsHost, type TlsHost } from '../helpers/tls-hosts.js';
import { until } from '../helpers/until.js';

const KEYS = standardKeys('r');
const HMAC_VALUE = (KEYS.find((k) => k.kind === 'hmac') as { value: Buffer }).value;
const DATA = Buffer.from('remote member hosts');
const EXPECTED_MAC = createHmac('sha256', HMAC_VALUE).update(DATA).digest();

let bed: Testbed;
let certs: TestCertificates;
const hosts: TlsHost[] = [];
let guarded: TlsHost;

beforeAll(async () => {
  bed = await createTestbed({ count: 3 });
  provisionKeys(bed.tokens, KEYS);
  await HaGroup.initDomain({ members: bed.memberConfigs(), transport: 'in-process' });
  certs = await makeCertificates(join(bed.dir, 'tls'), ['app-1', 'app-2']);
  for (const token of bed.tokens) hosts.push(await startTlsHost(bed.dir, token, certs));
  // A host with an allow-list: only app-1 may come in.
  guarded = await startTlsHost(bed.dir, bed.tokens[0]!, certs, { allow: ['app-1'] });
}, 120_000);

afterAll(async () => {
  await Promise.allSettled([...hosts, guarded].filter((h) => h !== undefined).map((h) => h.stop()));
  await bed?.dispose();
});

function remoteMembers(app: string): RemoteMemberConfig[] {
  const id = certs.client(app);
  return bed.tokens.map((t, i) => ({ name: t.label, url: hosts[i]!.url, tls: { ca: certs.ca, cert: id.cert, key: id.key }, userPin: t.userPin }));
}

async function openGroup(extra: Partial<GroupConfig> = {}): Promise<HaGroup> {
  return HaGroup.open({ members: remoteMembers('app-1'), recovery: { intervalMs: 100 }, deadlineMs: 10_000, ...extra });
}

describe('a group over TLS member hosts', () => {
  it('runs operations on every member, over TLS', async () => {
    const group = await openGroup();
    try {
      expect(group.status().members.map((m) => [m.transport, m.state.kind])).toEqual([
        ['tls', 'active'],
        ['tls', 'active'],
        ['tls', 'active'],
      ]);
      const session = group.slot.openSession();
      await session.login(bed.tokens[0]!.userPin);
      const [key] = await session.findObjects({ label: 'r-hmac' });
      expect(key).toBeDefined();
      const macs = await Promise.all(Array.from({ length: 60 }, () => session.sign('SHA256_HMAC', key!, DATA)));
      for (const mac of macs) expect(mac.equals(EXPECTED_MAC)).toBe(true);
      // Least-busy spread the signatures: every member served some.
      expect(group.status().members.every((m) => m.served > 0)).toBe(true);
      const generated = await session.generateKey('AES_KEY_GEN', { label: 'r-made', valueLen: 32, token: true, encrypt: true, decrypt: true });
      const iv = Buffer.alloc(16, 1);
      const sealed = await session.encrypt({ name: 'AES_CBC_PAD', iv }, generated, DATA);
      expect((await session.decrypt({ name: 'AES_CBC_PAD', iv }, generated, sealed)).equals(DATA)).toBe(true);
    } finally {
      await group.close();
    }
  }, 60_000);

  it('a TLS host killed under load: no error, the member fails at once, and recovers when its host is back', async () => {
    const group = await openGroup({ deadlineMs: 60_000 });
    try {
      const session = group.slot.openSession();
      await session.login(bed.tokens[0]!.userPin);
      const [key] = await session.findObjects({ label: 'r-hmac' });
      const victim = hosts[1]!;
      const errors: unknown[] = [];
      let done = 0;
      let killed: Promise<void> | undefined;
      const lane = async (): Promise<void> => {
        while (done < 600) {
          try {
            const mac = await session.sign('SHA256_HMAC', key!, DATA);
            if (!mac.equals(EXPECTED_MAC)) errors.push(new Error('wrong MAC'));
          } catch (error) {
            errors.push(error);
          }
          if (++done === 150) killed = victim.kill();
        }
      };
      await Promise.all(Array.from({ length: 8 }, lane));
      await killed;
      expect(errors).toEqual([]);
      const member = () => group.status().members[1]!;
      expect(['failed', 'recovering']).toContain(member().state.kind);
      // Back on the same port: the recovery loop reconnects over TLS by itself.
      hosts[1] = await startTlsHost(bed.dir, bed.tokens[1]!, certs, { port: victim.port });
      await until(() => member().state.kind === 'active', 'the member to recover over TLS', 30_000, 20);
      const served = member().served;
      await Promise.all(Array.from({ length: 30 }, () => session.sign('SHA256_HMAC', key!, DATA)));
      expect(member().served).toBeGreaterThan(served);
    } finally {
      await group.close();
    }
  }, 90_000);
});

describe('a frozen TLS host', () => {
  it('fails its member by the deadline (no heartbeat comes), and the member recovers once the host runs again', async () => {
    const group = await openGroup({ deadlineMs: 1500, heartbeatIntervalMs: 200 });
    const victim = hosts[2]!;
    let frozen = false;
    try {
      const session = group.slot.openSession();
      await session.login(bed.tokens[0]!.userPin);
      const [key] = await session.findObjects({ label: 'r-hmac' });
      const reasons: string[] = [];
      group.on('memberFailed', (e) => reasons.push(e.reason));
      const errors: unknown[] = [];
      let done = 0;
      const lane = async (): Promise<void> => {
        while (done < 400) {
          await session.sign('SHA256_HMAC', key!, DATA).catch((error: unknown) => errors.push(error));
          if (++done === 100) {
            process.kill(victim.pid, 'SIGSTOP');
            frozen = true;
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, lane));
      // The commands caught on the frozen host ran again elsewhere once the deadline passed.
      expect(errors).toEqual([]);
      await until(() => reasons.length > 0, 'the member to fail');
      expect(reasons[0]).toMatch(/no answer for \d+ ms \(deadline 1500 ms/);
      process.kill(victim.pid, 'SIGCONT');
      frozen = false;
      await until(() => group.status().members[2]!.state.kind === 'active', 'the member to recover', 30_000, 20);
    } finally {
      if (frozen) process.kill(victim.pid, 'SIGCONT');
      await group.close();
    }
  }, 90_000);
});

describe('heartbeats over TLS', () => {
  let threaded: TlsHost;
  beforeAll(async () => {
    // Commands on the host's worker threads: its heartbeats flow while one runs (every 200 ms: tls-hosts.ts).
    threaded = await startTlsHost(bed.dir, bed.tokens[0]!, certs, { calls: 'threads' });
  }, 60_000);
  afterAll(async () => {
    await threaded?.stop();
  });

  const member = (): RemoteMemberConfig => {
    const t = bed.tokens[0]!;
    const id = certs.client('app-1');
    return { name: t.label, url: threaded.url, tls: { ca: certs.ca, cert: id.cert, key: id.key }, userPin: t.userPin };
  };

  it('a long command (RSA-4096 key pair) outlives a short deadline thanks to the heartbeats of a TLS host', async () => {
    const group = await HaGroup.open({ members: [member()], deadlineMs: 600, recovery: { maxAttempts: 0 } });
    try {
      const failures: string[] = [];
      group.on('memberFailed', (e) => failures.push(`${e.member}: ${e.reason}`));
      let beats = 0;
      internalsOf(group).members[0]!.transport.onHeartbeat?.(() => beats++);
      const session = group.slot.openSession();
      await session.login(bed.tokens[0]!.userPin);
      // Meaningful only when a generation takes longer than the deadline (seconds here); a few tries guard against a lucky fast prime.
      let tookMs = 0;
      for (let i = 0; i < 3 && tookMs <= 600; i++) {
        const started = Date.now();
        await session.generateKeyPair(
          'RSA_PKCS_KEY_PAIR_GEN',
          { label: 'r-rsa4096', modulusBits: 4096, publicExponent: Buffer.from([1, 0, 1]), verify: true },
          { label: 'r-rsa4096', sign: true },
        );
        tookMs = Date.now() - started;
      }
      expect(failures).toEqual([]);
      expect(tookMs).toBeGreaterThan(600);
      expect(beats).toBeGreaterThan(0);
      expect(group.status().members[0]!.state.kind).toBe('active');
    } finally {
      await group.close();
    }
  }, 120_000);

  it("a client whose deadline is under 3 of the host's heartbeat intervals is refused at the welcome (ERR_CONFIG)", async () => {
    const { url, tls } = member();
    const client = new RpcClient({ member: 'probe', kind: 'tls', connect: tlsConnector({ url, ...tls }), secret: new Uint8Array(0), connectTimeoutMs: 10_000, deadlineMs: 500 });
    const error = await client.connect().catch((e: unknown) => e);
    await client.close();
    expect(error).toMatchObject({ code: 'ERR_CONFIG' });
    expect((error as Error).message).toMatch(/500 ms is under 3 heartbeat intervals of its member host \(200 ms each\).*at least 600/);
    const fine = new RpcClient({ member: 'probe', kind: 'tls', connect: tlsConnector({ url, ...tls }), secret: new Uint8Array(0), connectTimeoutMs: 10_000, deadlineMs: 600 });
    expect((await fine.connect()).label).toBe(bed.tokens[0]!.label);
    await fine.close();
  }, 30_000);
});

describe('handshake failures', () => {
  const client = (host: TlsHost, connect: () => ReturnType<ReturnType<typeof tlsConnector>>) =>
    new RpcClient({ member: 'probe', kind: 'tls', connect, secret: new Uint8Array(0), connectTimeoutMs: 10_000 });
  const good = (host: TlsHost, app = 'app-1') => client(host, tlsConnector({ url: host.url, ca: certs.ca, ...certs.client(app) }));

  /** The refused client fails to connect, the host logs why, executes nothing, and serves a good client after. */
  async function refused(host: TlsHost, bad: RpcClient, logged: RegExp): Promise<void> {
    const witness = good(host);
    await witness.connect();
    const before = (await witness.hostStats()).served;
    const lines = host.log.length;
    await expect(bad.connect()).rejects.toMatchObject({ code: 'ERR_MEMBER_UNREACHABLE' });
    await bad.close();
    await until(() => host.log.slice(lines).some((l) => logged.test(l)), `the host to log ${logged}`, 10_000);
    expect(host.log.slice(lines).some((l) => /connected from/.test(l))).toBe(false);
    // Nothing was executed for it, and the others are served on.
    expect((await witness.hostStats()).served).toBe(before);
    const slot = (await good(host).connect()).slot;
    expect(slot).toBeDefined();
    await witness.close();
  }

  it('a client certificate from a CA the host does not trust', async () => {
    const host = hosts[0]!;
    await refused(host, client(host, tlsConnector({ url: host.url, ca: certs.ca, ...certs.stranger })), /refused 127\.0\.0\.1:\d+: TLS handshake failed: client certificate "stranger" refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
  }, 30_000);

  it('an expired client certificate', async () => {
    const host = hosts[0]!;
    await refused(host, client(host, tlsConnector({ url: host.url, ca: certs.ca, ...certs.expired })), /refused 127\.0\.0\.1:\d+: TLS handshake failed: client certificate "expired-app" refused: CERT_HAS_EXPIRED/);
  }, 30_000);

  it('no client certificate', async () => {
    const host = hosts[0]!;
    const connect = () => tlsConnect({ host: '127.0.0.1', port: host.port, ca: readFileSync(certs.ca), minVersion: 'TLSv1.3' });
    await refused(host, client(host, connect), /refused 127\.0\.0\.1:\d+: TLS handshake failed: no client certificate/);
  }, 30_000);

  it('plain TCP', async () => {
    const host = hosts[0]!;
    await refused(host, client(host, () => tcpConnect(host.port, '127.0.0.1')), /refused 127\.0\.0\.1:\d+: TLS handshake failed/);
  }, 30_000);

  it('a client whose subject is not in the allow-list', async () => {
    await refused(guarded, good(guarded, 'app-2'), /refused 127\.0\.0\.1:\d+: client "app-2" is not in the allow-list/);
  }, 30_000);

  it('the client checks the host: a host certificate from another CA is refused by the client', async () => {
    const host = hosts[0]!;
    const bad = client(host, tlsConnector({ url: host.url, ca: certs.otherCa, ...certs.client('app-1') }));
    await expect(bad.connect()).rejects.toMatchObject({ code: 'ERR_MEMBER_UNREACHABLE' });
    // And its name: the certificate is for 127.0.0.1 and localhost, not another name.
    const wrongName = client(host, tlsConnector({ url: host.url, ca: certs.ca, ...certs.client('app-1'), servername: 'hsm.example' }));
    await expect(wrongName.connect()).rejects.toThrow(/altnames|does not match|Hostname/i);
  }, 30_000);
});
