/**
 * RpcClient over streams that are not a spawned host's socket: an in-memory duplex pair
 * whose far end is a scripted host (the protocol rules, deterministic), or a real
 * MemberHost served in this process (SoftHSM2). Waits are bounded polls, never sleeps.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, MemberUnreachableError } from '../../src/errors/ha-error.js';
import { MemberHost } from '../../src/host/member-host.js';
import type { Handle } from '../../src/pkcs11/commands.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { toMechanism } from '../../src/pkcs11/mechanism-table.js';
import { toRawTemplate } from '../../src/pkcs11/template-codec.js';
import { FrameDecoder } from '../../src/rpc/frame-decoder.js';
import { encodeFrame, type HostMessage } from '../../src/rpc/host-protocol.js';
import { RpcClient } from '../../src/rpc/rpc-client.js';
import type { ProvisionedKey } from '../../src/testbed/provision.js';
import type { Testbed, TestbedToken } from '../../src/testbed/softhsm-testbed.js';
import { CommandFailedError, type TokenInfo } from '../../src/transport/transport.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { keyedToken } from '../helpers/keyed-token.js';

/** Two connected in-memory streams, like the two ends of a socket: what one writes the other reads; destroying one closes both. */
function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const end = (peer: () => Duplex): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        peer().push(chunk);
        done();
      },
      final(done) {
        peer().push(null);
        done();
      },
      destroy(error, done) {
        if (!peer().destroyed) peer().destroy();
        done(error);
      },
    });
  ends.push(end(() => ends[1]!), end(() => ends[0]!));
  return [ends[0]!, ends[1]!];
}

const secret = Buffer.alloc(32, 7);
const token: TokenInfo = { slot: Buffer.alloc(8, 1), label: 'scripted', serial: '1', manufacturer: 'test', model: 'pair' };
const session = Buffer.alloc(8, 2);
const key = Buffer.alloc(8, 3);
const sign = (data: string) => ({ op: 'sign' as const, session, key, mechanism: { mechanism: pkcs11js.CKM_SHA256_HMAC }, data: Buffer.from(data) });

/** The host's end of a pair, played by the test: it records what arrives (message and chunk counts) and writes what it is told. */
function scriptedHost(stream: Duplex) {
  const received: HostMessage[] = [];
  let chunks = 0;
  const decoder = new FrameDecoder();
  const waiters: { readonly holds: () => boolean; readonly resolve: () => void }[] = [];
  stream.on('data', (chunk: Buffer) => {
    chunks++;
    decoder.push(chunk, (m) => received.push(m));
    for (const w of waiters.filter((w) => w.holds())) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  stream.on('error', () => undefined);
  return {
    received,
    chunks: () => chunks,
    send: (...messages: HostMessage[]) => stream.write(Buffer.concat(messages.map(encodeFrame))),
    raw: (bytes: Buffer) => stream.write(bytes),
    /** Resolves once what has arrived makes `holds` true (checked on each chunk). */
    seen: (holds: () => boolean): Promise<void> => (holds() ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ holds, resolve }))),
    /** The request ids received, in order. */
    ids: () => received.flatMap((m) => (m.t === 'request' || m.t === 'stats' ? [m.id] : [])),
  };
}

/** A client over a pair whose host end has welcomed it. */
async function connected() {
  const [near, far] = duplexPair();
  const host = scriptedHost(far);
  const client = new RpcClient({ member: 'm', connect: () => near, secret });
  const connecting = client.connect();
  await host.seen(() => host.received.length === 1);
  host.send({ t: 'welcome', token });
  await connecting;
  return { client, host, near, far };
}

describe('RpcClient over an in-memory stream, against a scripted host', () => {
  it('says hello with the secret, and connects on the welcome with the token it carries', async () => {
    const [near, far] = duplexPair();
    const host = scriptedHost(far);
    const client = new RpcClient({ member: 'm', connect: async () => near, secret: () => secret });
    expect(client.kind).toBe('rpc');
    const connecting = client.connect();
    await host.seen(() => host.received.length === 1);
    expect(host.received[0]).toEqual({ t: 'hello', secret });
    host.send({ t: 'welcome', token });
    expect(await connecting).toEqual(token);
    await expect(client.connect()).rejects.toThrow(/connect\(\) was called already/);
    await client.close();
  });

  it('sends the requests of one tick in one write, and matches replies to requests in any order', async () => {
    const { client, host } = await connected();
    const before = host.chunks();
    const running = ['a', 'b', 'c'].map((d) => client.execute(sign(d)));
    expect(client.pending).toBe(3);
    await host.seen(() => host.ids().length === 3);
    expect(host.chunks() - before).toBe(1);
    const [a, b, c] = host.ids() as [number, number, number];
    expect(new Set([a, b, c]).size).toBe(3);
    host.send(
      { t: 'reply', id: c, ok: true, value: Buffer.from('C') },
      { t: 'reply', id: a, ok: false, error: { rv: pkcs11js.CKR_KEY_HANDLE_INVALID, fn: 'C_SignInit', message: 'CKR_KEY_HANDLE_INVALID' } },
      { t: 'reply', id: b, ok: false, error: { message: 'command threads gone' }, unreachable: true },
      { t: 'reply', id: 999, ok: true, value: true }, // unknown id: ignored
    );
    const [ra, rb, rc] = await Promise.allSettled(running);
    expect(ra).toMatchObject({ status: 'rejected', reason: expect.any(CommandFailedError) });
    expect((ra as PromiseRejectedResult).reason.wire.rv).toBe(pkcs11js.CKR_KEY_HANDLE_INVALID);
    expect(rb).toMatchObject({ status: 'rejected', reason: expect.any(MemberUnreachableError) });
    expect(rc).toEqual({ status: 'fulfilled', value: Buffer.from('C') });
    expect(client.pending).toBe(0);
    await client.close();
  });

  it('tells each heartbeat, with the queue depth, to every listener', async () => {
    const { client, host } = await connected();
    const beats: [string, number][] = [];
    let fourTold!: () => void;
    const told = new Promise<void>((resolve) => (fourTold = resolve));
    client.onHeartbeat((depth) => beats.push(['first', depth]));
    client.onHeartbeat((depth) => {
      beats.push(['second', depth]);
      if (beats.length === 4) fourTold();
    });
    host.send({ t: 'heartbeat', queueDepth: 4 }, { t: 'heartbeat', queueDepth: 2 });
    await told;
    expect(beats).toEqual([['first', 4], ['second', 4], ['first', 2], ['second', 2]]);
    await client.close();
  });

  it('answers stats requests, which pending does not count', async () => {
    const { client, host } = await connected();
    const stats = client.hostStats();
    expect(client.pending).toBe(0);
    await host.seen(() => host.received.some((m) => m.t === 'stats'));
    host.send({ t: 'reply', id: host.ids()[0]!, ok: true, value: { queueDepth: 0, served: 12 } });
    expect(await stats).toEqual({ queueDepth: 0, served: 12 });
    await client.close();
  });

  it.each([
    ['the stream closes', (h: { far: Duplex }) => h.far.destroy(), /connection to the member host closed/],
    ['the host breaks the protocol', (h: { raw: (b: Buffer) => unknown }) => h.raw(Buffer.from([0, 0, 0, 2, 9, 9])), /protocol error: unknown frame tag 9/],
    ['the host sends a second welcome', (h: { send: (m: HostMessage) => unknown }) => h.send({ t: 'welcome', token }), /protocol error: unexpected welcome/],
    ['its owner says the host is gone', (h: { client: RpcClient }) => h.client.fail('member host exited (signal SIGKILL)'), /member host exited \(signal SIGKILL\)/],
  ] as const)('when %s: everything in flight rejects at once, onDisconnect is told once, later commands are refused unsent', async (_, fault, message) => {
    const c = await connected();
    const disconnects: Error[] = [];
    c.client.onDisconnect((error) => disconnects.push(error));
    const running = Promise.allSettled([c.client.execute(sign('a')), c.client.execute(sign('b'))]);
    await c.host.seen(() => c.host.ids().length === 2);
    (fault as (h: unknown) => unknown)({ ...c.host, ...c });
    for (const outcome of await running) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(MemberUnreachableError);
      expect((outcome as PromiseRejectedResult).reason.message).toMatch(message);
    }
    expect(c.client.pending).toBe(0);
    if (!c.near.destroyed) await once(c.near, 'close');
    c.client.fail('again'); // once lost, nothing more happens
    expect(disconnects).toHaveLength(1);
    expect(disconnects[0]!.message).toMatch(message);
    const refused = await c.client.execute(sign('c')).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(MemberUnreachableError);
    expect((refused as MemberUnreachableError).unsent).toBe(true);
    expect((refused as Error).message).toMatch(message);
  });

  it('close() rejects what is pending, destroys the stream and tells no listener; it is idempotent', async () => {
    const { client, near } = await connected();
    let disconnects = 0;
    client.onDisconnect(() => disconnects++);
    const pending = client.execute(sign('a')).catch((e: unknown) => e);
    await client.close();
    expect(await pending).toBeInstanceOf(MemberUnreachableError);
    expect(near.destroyed).toBe(true);
    await client.close();
    expect(disconnects).toBe(0);
    await expect(client.execute(sign('b'))).rejects.toThrow(/transport closed/);
  });

  it.each([
    ['the host closes on the hello (a wrong secret)', (far: Duplex) => far.destroy(), /closed the connection during the handshake/],
    ['the host answers the hello with garbage', (far: Duplex) => far.write(Buffer.from([0, 0, 0, 1, 7])), /protocol error/],
  ] as const)('connect() rejects when %s, and the client is closed after', async (_, fault, message) => {
    const [near, far] = duplexPair();
    const host = scriptedHost(far);
    const client = new RpcClient({ member: 'm', connect: () => near, secret });
    const connecting = client.connect().catch((e: unknown) => e);
    await host.seen(() => host.received.length === 1);
    fault(far);
    const error = await connecting;
    expect(error).toBeInstanceOf(MemberUnreachableError);
    expect((error as Error).message).toMatch(message);
    expect(near.destroyed).toBe(true);
    await expect(client.execute(sign('a'))).rejects.toThrow(/transport closed/);
  });

  it('connect() rejects when the stream cannot be opened, with the cause kept', async () => {
    const cause = new Error('ECONNREFUSED');
    const client = new RpcClient({ member: 'm', connect: () => Promise.reject(cause), secret });
    const error = await client.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MemberUnreachableError);
    expect((error as Error).message).toBe('member m: cannot reach the member host: ECONNREFUSED');
    expect((error as Error).cause).toBe(cause);
  });

  it('connect() gives up after connectTimeoutMs without a welcome (fake clock); close() during connect() fails it too', async () => {
    const clock = new FakeClock();
    const [near, far] = duplexPair();
    const host = scriptedHost(far);
    const client = new RpcClient({ member: 'm', connect: () => near, secret, connectTimeoutMs: 500, clock });
    const connecting = client.connect().catch((e: unknown) => e);
    await host.seen(() => host.received.length === 1);
    clock.advance(499);
    clock.advance(1);
    expect(((await connecting) as Error).message).toBe('member m: no welcome from the member host within 500 ms');
    expect(near.destroyed).toBe(true);

    const [near2, far2] = duplexPair();
    const host2 = scriptedHost(far2);
    const second = new RpcClient({ member: 'm', connect: () => near2, secret });
    const connecting2 = second.connect().catch((e: unknown) => e);
    await host2.seen(() => host2.received.length === 1);
    await second.close();
    expect(((await connecting2) as Error).message).toMatch(/transport closed while connecting/);
    expect(() => new RpcClient({ member: 'm', connect: () => near, secret, connectTimeoutMs: 0 })).toThrow(/connectTimeoutMs .* got 0/);
  });
});

describe("RpcClient: a deadline against the host's heartbeat interval", () => {
  /** Connects a client with `deadlineMs` to a scripted host that announces `interval` (or none) in its welcome. */
  async function welcomedWith(deadlineMs: number | undefined, interval: number | undefined) {
    const [near, far] = duplexPair();
    const host = scriptedHost(far);
    const client = new RpcClient({ member: 'm', connect: () => near, secret, ...(deadlineMs === undefined ? {} : { deadlineMs }) });
    const connecting = client.connect().catch((e: unknown) => e);
    await host.seen(() => host.received.length === 1);
    host.send(interval === undefined ? { t: 'welcome', token } : { t: 'welcome', token, heartbeatIntervalMs: interval });
    const outcome = await connecting;
    await client.close();
    return { outcome, near };
  }

  it('refuses to connect with a deadline under 3 heartbeat intervals of the host (ERR_CONFIG, saying what to change)', async () => {
    const { outcome, near } = await welcomedWith(599, 200);
    expect(outcome).toBeInstanceOf(ConfigError);
    expect(outcome).toMatchObject({ code: 'ERR_CONFIG' });
    expect((outcome as Error).message).toBe(
      "deadlineMs: member m: 599 ms is under 3 heartbeat intervals of its member host (200 ms each): a long command would fail the member before its heartbeats come; raise deadlineMs to at least 600 or lower the host's heartbeatIntervalMs",
    );
    expect(near.destroyed).toBe(true);
  });

  it('connects with a deadline of 3 intervals or more, with a host that announces none, or with no deadline given', async () => {
    expect((await welcomedWith(600, 200)).outcome).toEqual(token);
    expect((await welcomedWith(100, undefined)).outcome).toEqual(token);
    expect((await welcomedWith(undefined, 200)).outcome).toEqual(token);
  });
});

describe('RpcClient over an in-memory stream, against a real member host in this process', () => {
  let bed: Testbed;
  let hsm: TestbedToken;
  let keys: Map<string, ProvisionedKey>;
  let dir: string;
  let host: MemberHost;
  const hostSecret = randomBytes(32);

  beforeAll(async () => {
    ({ bed, token: hsm, keys } = await keyedToken('r'));
    dir = await mkdtemp(join(tmpdir(), 'pkcs11-ha-rpc-'));
    host = await MemberHost.start(
      {
        member: hsm.label,
        modulePath: hsm.modulePath,
        moduleEnv: hsm.env,
        token: { label: hsm.label },
        threads: 1,
        configPath: 'members[0]',
        socketPath: join(dir, 'host.sock'),
        heartbeatIntervalMs: 1000,
        calls: 'inline',
      },
      hostSecret,
      (error) => {
        throw error;
      },
    );
  });
  afterAll(async () => {
    await host?.close();
    await bed?.dispose();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const served = (secretBytes: Uint8Array): RpcClient => {
    const [near, far] = duplexPair();
    host.serve(far);
    return new RpcClient({ member: hsm.label, connect: () => near, secret: secretBytes });
  };

  it('signs through the host: HMAC checked against node, 32 requests in flight', async () => {
    const client = served(hostSecret);
    const info = await client.connect();
    expect(info).toMatchObject({ label: hsm.label, serial: hsm.serial });
    const first: Handle = await client.execute({ op: 'openSession', slot: info.slot });
    await client.execute({ op: 'login', session: first, userType: pkcs11js.CKU_USER, pin: hsm.userPin });
    // One session per command in flight: two calls on one SoftHSM session crash it.
    const sessions = [first, ...(await Promise.all(Array.from({ length: 31 }, () => client.execute({ op: 'openSession', slot: info.slot }))))];
    const hmacKey = keys.get('hmac') as Extract<ProvisionedKey, { kind: 'hmac' }>;
    const [hmac] = await client.execute({ op: 'findObjects', session: first, template: toRawTemplate({ label: hmacKey.label, class: 'secretKey' }) });
    const inputs = sessions.map((_, i) => Buffer.from(`message ${i}`));
    const running = sessions.map((s, i) => client.execute({ op: 'sign', session: s, mechanism: toMechanism('SHA256_HMAC'), key: hmac!, data: inputs[i]! }));
    expect(client.pending).toBe(32);
    const macs = await Promise.all(running);
    macs.forEach((mac, i) => expect(mac).toEqual(createHmac('sha256', hmacKey.value).update(inputs[i]!).digest()));
    expect((await client.hostStats()).queueDepth).toBe(0);
    await client.close();
  });

  it('is refused with a wrong secret (the host closes), while a right one still connects', async () => {
    const error = await served(randomBytes(32)).connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MemberUnreachableError);
    expect((error as Error).message).toMatch(/closed the connection during the handshake/);
    const client = served(hostSecret);
    await client.connect();
    await client.close();
  });

  it('loses the connection when the host drops it: pending commands reject, onDisconnect is told once', async () => {
    const [near, far] = duplexPair();
    host.serve(far);
    const client = new RpcClient({ member: hsm.label, connect: () => near, secret: hostSecret });
    const info = await client.connect();
    const disconnects: Error[] = [];
    client.onDisconnect((e) => disconnects.push(e));
    const session = await client.execute({ op: 'openSession', slot: info.slot });
    far.destroy();
    await expect(client.execute({ op: 'generateRandom', session, length: 8 })).rejects.toBeInstanceOf(MemberUnreachableError);
    expect(disconnects).toHaveLength(1);
  });
});
