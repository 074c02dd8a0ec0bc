/**
 * Load seen across processes: a remote member host reports, in every answer and
 * heartbeat, the commands it has read and not answered for its OTHER clients; the
 * least-busy scheduler adds them to the member's own outstanding count (`countHostLoad`,
 * on by default), so that one busy application does not make the others pile onto the
 * same member. Real `pkcs11-ha host` processes (short calls on their threads, so that a
 * flood queues there) and real TLS clients.
 */
import { join } from 'node:path';
import { duplexPair } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { MemberHost } from '../../src/host/member-host.js';
import type { Handle } from '../../src/pkcs11/commands.js';
import { LeastBusyScheduler } from '../../src/routing/least-busy-scheduler.js';
import { RpcClient } from '../../src/rpc/rpc-client.js';
import { tlsConnector } from '../../src/rpc/tls-stream.js';
import { provisionKeys, standardKeys } from '../../src/testbed/provision.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { makeCertificates, type TestCertificates } from '../helpers/tls-certificates.js';
import { startTlsHost, type TlsHost } from '../helpers/tls-hosts.js';
import { until } from '../helpers/until.js';

const KEYS = standardKeys('l');
const CKU_USER = 1;
const CKA_CLASS = 0x0;
const CKA_LABEL = 0x3;
const CKO_PRIVATE_KEY = 0x3;
const CKM_SHA256_RSA_PKCS = 0x40;
const DATA = Buffer.from('busy');

let bed: Testbed;
let certs: TestCertificates;
const hosts: TlsHost[] = [];

beforeAll(async () => {
  bed = await createTestbed({ count: 2 });
  provisionKeys(bed.tokens, KEYS);
  await HaGroup.initDomain({ members: bed.memberConfigs(), transport: 'in-process' });
  certs = await makeCertificates(join(bed.dir, 'tls'), ['heavy', 'light']);
  for (const token of bed.tokens) hosts.push(await startTlsHost(bed.dir, token, certs, { calls: 'threads' }));
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(hosts.map((h) => h.stop()));
  await bed?.dispose();
});

/** A logged-in protocol client of host `i` and the RSA private key it signs with. */
async function signer(i: number, name: string, countHostLoad: boolean, sessions = 1): Promise<{ client: RpcClient; sign: (lane?: number) => Promise<Buffer> }> {
  const client = new RpcClient({ member: name, kind: 'tls', connect: tlsConnector({ url: hosts[i]!.url, ca: certs.ca, ...certs.client(name) }), secret: new Uint8Array(0), countHostLoad });
  const token = await client.connect();
  // A session per lane: a session runs one command at a time.
  const lanes = await Promise.all(Array.from({ length: sessions }, () => client.execute({ op: 'openSession', slot: token.slot })));
  const session = lanes[0]!;
  await client.execute({ op: 'login', session, userType: CKU_USER, pin: bed.tokens[i]!.userPin });
  const [key] = (await client.execute({ op: 'findObjects', session, template: [{ type: CKA_LABEL, value: 'l-rsa' }, { type: CKA_CLASS, value: CKO_PRIVATE_KEY }] })) as Handle[];
  return { client, sign: (lane = 0) => client.execute({ op: 'sign', session: lanes[lane]!, key: key!, mechanism: { mechanism: CKM_SHA256_RSA_PKCS }, data: DATA }) };
}

/** Keeps `depth` signatures in flight on `s` until `stop()` is called. */
function flood(s: { sign: (lane: number) => Promise<Buffer> }, depth: number): { stop: () => Promise<void> } {
  let running = true;
  const lanes = Array.from({ length: depth }, async (_, lane) => {
    while (running) await s.sign(lane);
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(lanes);
    },
  };
}

describe('host-reported load', () => {
  it("the scheduler adds a member's host load to its own outstanding count", () => {
    const scheduler = new LeastBusyScheduler();
    // Equal own load: the host's other clients decide.
    expect(scheduler.pick([{ index: 0, outstanding: 0, hostLoad: 5 }, { index: 1, outstanding: 0 }])?.index).toBe(1);
    expect(scheduler.pick([{ index: 0, outstanding: 0, hostLoad: 5 }, { index: 1, outstanding: 0 }])?.index).toBe(1);
    // Own outstanding and host load count alike: 2 + 0 < 0 + 3.
    expect(scheduler.pick([{ index: 0, outstanding: 0, hostLoad: 3 }, { index: 1, outstanding: 2 }])?.index).toBe(1);
    expect(scheduler.pick([{ index: 0, outstanding: 1, hostLoad: 0 }, { index: 1, outstanding: 0, hostLoad: 2 }])?.index).toBe(0);
  });

  it("a client sees, in its answers, the commands the host runs for its other clients (not its own); off, it sees none", async () => {
    const heavy = await signer(0, 'heavy', false, 32);
    const light = await signer(0, 'light', true, 16);
    const blind = await signer(0, 'light', false);
    try {
      // Alone on the host, with its own commands in flight: nothing reported.
      await Promise.all(Array.from({ length: 16 }, (_, lane) => light.sign(lane)));
      expect(light.client.hostLoad).toBe(0);
      const busy = flood(heavy, 32);
      const seen: number[] = [];
      for (let i = 0; i < 20; i++) {
        await light.sign();
        await blind.sign();
        seen.push(light.client.hostLoad);
      }
      await busy.stop();
      expect(Math.max(...seen)).toBeGreaterThanOrEqual(8);
      expect(blind.client.hostLoad).toBe(0);
      // Heard once the heavy client is done: the report falls back to 0.
      await light.sign();
      expect(light.client.hostLoad).toBe(0);
    } finally {
      await Promise.all([heavy.client.close(), light.client.close(), blind.client.close()]);
    }
  }, 60_000);

  for (const countHostLoad of [true, false]) {
    it(`a group ${countHostLoad ? 'avoids' : 'does not see'} the member another application keeps busy (countHostLoad: ${countHostLoad})`, async () => {
      const heavy = await signer(0, 'heavy', false, 32);
      const id = certs.client('light');
      const group = await HaGroup.open({
        members: bed.tokens.map((t, i) => ({ name: t.label, url: hosts[i]!.url, tls: { ca: certs.ca, cert: id.cert, key: id.key }, userPin: t.userPin })),
        countHostLoad,
      });
      const busy = flood(heavy, 32);
      try {
        const session = group.slot.openSession();
        await session.login(bed.tokens[0]!.userPin);
        const [key] = await session.findObjects({ label: 'l-rsa', class: 'privateKey' });
        const before = group.status().members.map((m) => m.served);
        for (let i = 0; i < 60; i++) await session.sign('SHA256_RSA_PKCS', key!, DATA);
        const served = group.status().members.map((m, i) => m.served - before[i]!);
        if (countHostLoad) expect(served[1]!).toBeGreaterThanOrEqual(50);
        else expect(Math.abs(served[0]! - served[1]!)).toBeLessThanOrEqual(4);
      } finally {
        await busy.stop();
        await group.close();
        await heavy.client.close();
      }
    }, 60_000);
  }
});

describe('host load in heartbeats, for clients with nothing pending', () => {
  it('a busy host keeps an idle client\'s report fresh on its heartbeats (well past 1 s), then sends one 0 and falls silent', async () => {
    // An in-process host on the fake clock: its heartbeats, and an emulated device whose
    // service time holds the heavy client's commands in the host until the clock moves.
    const clock = new FakeClock(0);
    const token = bed.tokens[1]!;
    const host = await MemberHost.start(
      {
        member: token.label,
        modulePath: token.modulePath,
        moduleEnv: token.env,
        token: { label: token.label },
        threads: 1,
        configPath: 'members[1]',
        heartbeatIntervalMs: 1000,
        calls: 'inline',
        emulate: { engines: 1, serviceTimeMs: 60_000 },
      },
      Buffer.alloc(0),
      (error) => {
        throw error;
      },
      clock,
    );
    const client = async (name: string): Promise<{ client: RpcClient; beats: number[] }> => {
      const [near, far] = duplexPair();
      host.serve(far);
      const c = new RpcClient({ member: name, connect: () => near, secret: new Uint8Array(0), clock, countHostLoad: true });
      await c.connect();
      const beats: number[] = [];
      c.onHeartbeat((depth) => beats.push(depth));
      return { client: c, beats };
    };
    const heavy = await client('heavy');
    const light = await client('light');
    try {
      // Commands on no real session fail, after their service time like any other.
      const heavyCommands = Array.from({ length: 4 }, () => heavy.client.execute({ op: 'generateRandom', session: Buffer.alloc(8), length: 1 }).catch(() => undefined));
      await until(async () => (await light.client.hostStats()).queueDepth === 4, 'the heavy commands to reach the host');
      expect(light.client.hostLoad).toBe(0);
      // 5 heartbeat intervals, more than the 3 the report counts for and well past 1 s:
      // the idle client hears the load on every one of them.
      for (let tick = 1; tick <= 5; tick++) {
        clock.advance(1000);
        await until(() => light.beats.length === tick, `heartbeat ${tick} at the idle client`);
        expect(light.client.hostLoad).toBe(4);
      }
      expect(light.client.pending).toBe(0);
      // The heavy client, alone with its own commands, hears no load of others.
      expect(heavy.client.hostLoad).toBe(0);
      // The heavy commands end: one heartbeat says so (the only one with an idle host), then none come.
      await until(async () => {
        clock.advance(60_000);
        return (await light.client.hostStats()).queueDepth === 0;
      }, 'the heavy commands to finish');
      await Promise.all(heavyCommands);
      clock.advance(1000);
      // A stats round trip: a heartbeat sent on the ticks before it arrives before its answer.
      await light.client.hostStats();
      expect(light.beats.filter((depth) => depth === 0)).toHaveLength(1);
      expect(light.beats.at(-1)).toBe(0);
      expect(light.client.hostLoad).toBe(0);
      const heard = light.beats.length;
      clock.advance(3000);
      await light.client.hostStats();
      expect(light.beats).toHaveLength(heard);
    } finally {
      await Promise.all([heavy.client.close(), light.client.close()]);
      await host.close();
    }
  }, 60_000);
});
