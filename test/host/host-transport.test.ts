/**
 * HostTransport against real SoftHSM2 tokens and real member host processes. Processes
 * are ended only by the pids these tests started; waits are bounded polls, never sleeps.
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createDecipheriv, createHash, createHmac, createPublicKey, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, MemberUnreachableError } from '../../src/errors/ha-error.js';
import { FrameDecoder } from '../../src/rpc/frame-decoder.js';
import { encodeFrame, type HostMessage } from '../../src/rpc/host-protocol.js';
import type { Handle } from '../../src/pkcs11/commands.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { toMechanism } from '../../src/pkcs11/mechanism-table.js';
import { toRawTemplate, type FriendlyTemplate } from '../../src/pkcs11/template-codec.js';
import type { ProvisionedKey } from '../../src/testbed/provision.js';
import type { Testbed, TestbedToken } from '../../src/testbed/softhsm-testbed.js';
import { HostTransport, type HostTransportOptions } from '../../src/host/host-transport.js';
import { InProcessTransport } from '../../src/transport/in-process-transport.js';
import { CommandFailedError, type TokenInfo } from '../../src/transport/transport.js';
import { isGone } from '../helpers/processes.js';
import { until } from '../helpers/until.js';
import { keyedToken, memberOptions } from '../helpers/keyed-token.js';


const template = (t: FriendlyTemplate) => toRawTemplate(t);

describe('HostTransport: a member in its own process', () => {
  let bed: Testbed;
  let token: TestbedToken;
  let keys: Map<string, ProvisionedKey>;
  const transports: HostTransport[] = [];

  const base = (): HostTransportOptions => memberOptions(token);
  const open = (extra: Partial<HostTransportOptions> = {}): HostTransport => {
    const t = new HostTransport({ ...base(), ...extra });
    transports.push(t);
    return t;
  };
  /** A fresh session on the host's token, logged in (login state is per host process). */
  const loggedIn = async (t: HostTransport, info: TokenInfo): Promise<Handle> => {
    const session = await t.execute({ op: 'openSession', slot: info.slot });
    try {
      await t.execute({ op: 'login', session, userType: pkcs11js.CKU_USER, pin: token.userPin });
    } catch (error) {
      if (!(error instanceof CommandFailedError && error.wire.rv === pkcs11js.CKR_USER_ALREADY_LOGGED_IN)) throw error;
    }
    return session;
  };
  const find = async (t: HostTransport, session: Handle, label: string, cls: 'secretKey' | 'privateKey' | 'publicKey'): Promise<Handle> => {
    const found = await t.execute({ op: 'findObjects', session, template: template({ label, class: cls }) });
    expect(found).toHaveLength(1);
    return found[0]!;
  };
  const rsa4096 = (t: HostTransport, session: Handle) =>
    t.execute({
      op: 'generateKeyPair',
      session,
      mechanism: toMechanism('RSA_PKCS_KEY_PAIR_GEN'),
      publicTemplate: template({ token: false, modulusBits: 4096, publicExponent: 65537, verify: true }),
      privateTemplate: template({ token: false, private: true, sensitive: true, sign: true }),
    });

  beforeAll(async () => {
    ({ bed, token, keys } = await keyedToken('h'));
  });
  afterAll(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await bed?.dispose();
  });

  it.each(['inline', 'threads'] as const)('serves sign/verify and encrypt/decrypt through the host (calls %s); socket 0600 in a 0700 directory; close removes both', async (calls) => {
    const t = open({ calls });
    expect(t.kind).toBe('host');
    const info = await t.connect();
    expect(info).toMatchObject({ label: token.label, serial: token.serial });
    const pid = t.pid!;
    expect(pid).toBeGreaterThan(0);
    const socketPath = t.socketPath!;
    const sock = await stat(socketPath);
    expect(sock.isSocket()).toBe(true);
    expect(sock.mode & 0o777).toBe(0o600);
    expect((await stat(dirname(socketPath))).mode & 0o777).toBe(0o700);

    const session = await loggedIn(t, info);
    const data = randomBytes(1024);

    // HMAC: the hot binary path both ways.
    const hmacKey = keys.get('hmac') as Extract<ProvisionedKey, { kind: 'hmac' }>;
    const hmac = await find(t, session, hmacKey.label, 'secretKey');
    const mac = await t.execute({ op: 'sign', session, mechanism: toMechanism('SHA256_HMAC'), key: hmac, data });
    expect(mac).toEqual(createHmac('sha256', hmacKey.value).update(data).digest());
    expect(await t.execute({ op: 'verify', session, mechanism: toMechanism('SHA256_HMAC'), key: hmac, data, signature: mac })).toBe(true);

    // AES-GCM with AAD, checked against node's own AES-GCM.
    const aesKey = keys.get('aes') as Extract<ProvisionedKey, { kind: 'aes' }>;
    const aes = await find(t, session, aesKey.label, 'secretKey');
    const iv = randomBytes(12);
    const aad = Buffer.from('context');
    const gcm = toMechanism({ name: 'AES_GCM', iv, aad });
    const ct = await t.execute({ op: 'encrypt', session, mechanism: gcm, key: aes, data });
    const decipher = createDecipheriv('aes-256-gcm', aesKey.value, iv).setAAD(aad).setAuthTag(ct.subarray(-16));
    expect(Buffer.concat([decipher.update(ct.subarray(0, -16)), decipher.final()])).toEqual(data);
    expect(await t.execute({ op: 'decrypt', session, mechanism: gcm, key: aes, data: ct })).toEqual(data);
    const cipher = createCipheriv('aes-256-gcm', aesKey.value, iv).setAAD(aad);
    const nodeCt = Buffer.concat([cipher.update(data), cipher.final(), cipher.getAuthTag()]);
    expect(ct).toEqual(nodeCt);

    // ECDSA over a SHA-256 digest; node verifies, and the host says false for a bad signature.
    const ecKey = keys.get('ec-p256') as Extract<ProvisionedKey, { kind: 'ec-p256' }>;
    const ecPrivate = await find(t, session, ecKey.label, 'privateKey');
    const ecPublic = await find(t, session, ecKey.label, 'publicKey');
    const digest = await t.execute({ op: 'digest', session, mechanism: toMechanism('SHA256'), data });
    expect(digest).toEqual(createHash('sha256').update(data).digest());
    const sig = await t.execute({ op: 'sign', session, mechanism: toMechanism('ECDSA'), key: ecPrivate, data: digest });
    expect(cryptoVerify('sha256', data, { key: createPublicKey(ecKey.privateKey), dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
    const bad = Buffer.from(sig);
    bad[0]! ^= 1;
    expect(await t.execute({ op: 'verify', session, mechanism: toMechanism('ECDSA'), key: ecPublic, data: digest, signature: bad })).toBe(false);

    // RSA-PSS: a mechanism parameter object, so the v8 path.
    const rsaKey = keys.get('rsa') as Extract<ProvisionedKey, { kind: 'rsa' }>;
    const rsaPrivate = await find(t, session, rsaKey.label, 'privateKey');
    const pss = await t.execute({ op: 'sign', session, mechanism: toMechanism('SHA256_RSA_PKCS_PSS'), key: rsaPrivate, data });
    expect(cryptoVerify('sha256', data, { key: createPublicKey(rsaKey.privateKey), padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 }, pss)).toBe(true);

    // A key made through commands, an object result, attributes read back.
    const pair = await t.execute({
      op: 'generateKeyPair',
      session,
      mechanism: toMechanism('EC_KEY_PAIR_GEN'),
      publicTemplate: template({ token: false, curve: 'P-256', verify: true }),
      privateTemplate: template({ token: false, private: true, sensitive: true, sign: true }),
    });
    expect(Buffer.isBuffer(pair.publicKey) && Buffer.isBuffer(pair.privateKey)).toBe(true);
    const [point, value] = await t.execute({ op: 'getAttributes', session, object: pair.privateKey, types: [pkcs11js.CKA_SIGN, pkcs11js.CKA_VALUE] });
    expect(point?.value).toEqual(Buffer.from([1]));
    expect(value?.value).toBeUndefined(); // sensitive: hidden, not an error

    // A module error comes back as the module's answer, not as a transport failure.
    const failure = await t.execute({ op: 'sign', session, mechanism: toMechanism('SHA256_HMAC'), key: Buffer.alloc(8, 0xee), data }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(CommandFailedError);
    expect((failure as CommandFailedError).wire.rv).toBeDefined();
    expect(t.pending).toBe(0);

    await t.close();
    expect(isGone(pid)).toBe(true);
    expect(existsSync(dirname(socketPath))).toBe(false);
  });

  it.each(['inline', 'threads'] as const)('answers 64 commands in flight at once (calls %s)', async (calls) => {
    const t = open({ calls });
    const info = await t.connect();
    const first = await loggedIn(t, info);
    // One session per command in flight: two calls on one SoftHSM session crash it.
    const sessions = [first, ...(await Promise.all(Array.from({ length: 63 }, () => t.execute({ op: 'openSession', slot: info.slot }))))];
    const hmacKey = keys.get('hmac') as Extract<ProvisionedKey, { kind: 'hmac' }>;
    const hmac = await find(t, first, hmacKey.label, 'secretKey');
    const inputs = sessions.map((_, i) => Buffer.from(`message ${i}`));
    const running = sessions.map((session, i) => t.execute({ op: 'sign', session, mechanism: toMechanism('SHA256_HMAC'), key: hmac, data: inputs[i]! }));
    expect(t.pending).toBe(64);
    const macs = await Promise.all(running);
    macs.forEach((mac, i) => expect(mac).toEqual(createHmac('sha256', hmacKey.value).update(inputs[i]!).digest()));
    expect(t.pending).toBe(0);
    expect((await t.hostStats()).queueDepth).toBe(0);
  });

  it('refuses a client with a wrong secret, or one that skips the handshake; the real client goes on', async () => {
    const t = open();
    const info = await t.connect();
    const tryClient = async (frame: Buffer): Promise<HostMessage[]> => {
      const raw = createConnection(t.socketPath!);
      const got: HostMessage[] = [];
      const decoder = new FrameDecoder();
      raw.on('data', (chunk: Buffer) => decoder.push(chunk, (m) => got.push(m)));
      raw.on('error', () => undefined);
      const closed = new Promise((resolve) => raw.once('close', resolve));
      raw.once('connect', () => raw.write(frame));
      await closed;
      return got;
    };
    expect(await tryClient(encodeFrame({ t: 'hello', secret: randomBytes(32) }))).toEqual([]);
    expect(await tryClient(encodeFrame({ t: 'hello', secret: randomBytes(16) }))).toEqual([]);
    expect(await tryClient(encodeFrame({ t: 'request', id: 1, command: { op: 'openSession', slot: info.slot } }))).toEqual([]);
    // Oversized before the handshake: refused from the header alone.
    expect(await tryClient(encodeFrame({ t: 'hello', secret: Buffer.alloc(10_000) }))).toEqual([]);
    const session = await t.execute({ op: 'openSession', slot: info.slot });
    expect(await t.execute({ op: 'generateRandom', session, length: 8 })).toHaveLength(8);
  });

  it('fails at once when the host is killed: pending commands reject with MemberUnreachableError, onDisconnect is told once', async () => {
    const t = open();
    const info = await t.connect();
    const s1 = await loggedIn(t, info);
    const s2 = await t.execute({ op: 'openSession', slot: info.slot });
    const disconnects: Error[] = [];
    t.onDisconnect((error) => disconnects.push(error));
    const running = [rsa4096(t, s1), rsa4096(t, s2)];
    const outcomes = Promise.allSettled(running);
    // Both are in the host now (its main thread answers while its workers generate).
    await until(async () => (await t.hostStats()).queueDepth === 2, 'the host holds both commands');
    expect(t.pending).toBe(2);
    const pid = t.pid!;
    process.kill(pid, 'SIGKILL');
    for (const outcome of await outcomes) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(MemberUnreachableError);
    }
    expect(t.pending).toBe(0);
    await expect(t.execute({ op: 'generateRandom', session: s1, length: 1 })).rejects.toBeInstanceOf(MemberUnreachableError);
    // close() waits for the exit and the socket's close: both have happened, one was told.
    await t.close();
    expect(disconnects).toHaveLength(1);
    expect(disconnects[0]).toBeInstanceOf(MemberUnreachableError);
    expect(isGone(pid)).toBe(true);
    expect(existsSync(dirname(t.socketPath!))).toBe(false);
  });

  it('close() of a SIGSTOPped host returns, rejects what was pending and leaves no process (no disconnect event)', async () => {
    const t = open({ closeTimeoutMs: 200 });
    const info = await t.connect();
    const session = await t.execute({ op: 'openSession', slot: info.slot });
    let disconnects = 0;
    t.onDisconnect(() => disconnects++);
    const pid = t.pid!;
    process.kill(pid, 'SIGSTOP');
    const stuck = t.execute({ op: 'generateRandom', session, length: 8 }).catch((e: unknown) => e);
    await t.close();
    expect(await stuck).toBeInstanceOf(MemberUnreachableError);
    await until(() => isGone(pid), 'the stopped host is gone');
    expect(disconnects).toBe(0);
    await t.close(); // idempotent
    await expect(t.execute({ op: 'generateRandom', session, length: 1 })).rejects.toThrow(/transport closed/);
  });

  it('sends heartbeats with the queue depth while a long command runs (RSA-4096 key generation)', async () => {
    const t = open({ heartbeatIntervalMs: 50 });
    const info = await t.connect();
    const session = await loggedIn(t, info);
    const beats: number[] = [];
    t.onHeartbeat((depth) => beats.push(depth));
    // One generation takes far longer than two intervals; a few tries guard against a lucky fast prime.
    for (let i = 0; i < 3 && beats.length === 0; i++) await rsa4096(t, session);
    expect(beats.length).toBeGreaterThan(0);
    expect(beats.every((depth) => depth >= 1)).toBe(true);
  });

  it('EMULATION: engines=2 never has more than 2 commands busy under 16 in flight, and does reach 2', async () => {
    const t = open({ emulate: { engines: 2, serviceTimeMs: 10 } });
    const info = await t.connect();
    const sessions = await Promise.all(Array.from({ length: 16 }, () => t.execute({ op: 'openSession', slot: info.slot })));
    const results = await Promise.all(sessions.map((session) => t.execute({ op: 'generateRandom', session, length: 16 })));
    expect(results.every((r) => r.length === 16)).toBe(true);
    const stats = await t.hostStats();
    expect(stats.emulation).toMatchObject({ engines: 2, serviceTimeMs: 10, busy: 0, maxBusy: 2 });
    expect(stats.queueDepth).toBe(0);
  });

  it('reports a missing token with the in-process transport error (class and message), and leaves nothing behind', async () => {
    const options = { ...base(), token: { label: 'no-such-token' } };
    const expected = await new InProcessTransport(options).connect().catch((e: unknown) => e);
    expect(expected).toBeInstanceOf(MemberUnreachableError);
    const t = open({ token: { label: 'no-such-token' } });
    const error = await t.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MemberUnreachableError);
    expect((error as Error).message).toBe((expected as Error).message);
    await until(() => isGone(t.pid!), 'the failed host is gone');
    expect(existsSync(dirname(t.socketPath!))).toBe(false);
  });

  it('reports a missing module file as the same ConfigError', async () => {
    const options = { ...base(), modulePath: '/nonexistent/libsofthsm2.so' };
    const expected = await new InProcessTransport(options).connect().catch((e: unknown) => e);
    const error = await open({ modulePath: '/nonexistent/libsofthsm2.so' }).connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe((expected as Error).message);
  });

  it('keeps PINs out of errors: a wrong PIN is the module answer, nothing more', async () => {
    const t = open();
    const info = await t.connect();
    const session = await t.execute({ op: 'openSession', slot: info.slot });
    const wrong = `${token.userPin}9`;
    const error = await t.execute({ op: 'login', session, userType: pkcs11js.CKU_USER, pin: wrong }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as CommandFailedError).wire.rv).toBe(pkcs11js.CKR_PIN_INCORRECT);
    expect(JSON.stringify((error as CommandFailedError).wire)).not.toContain(wrong);
    expect((error as Error).message).not.toContain(wrong);
  });

  it('validates its options, echoing the bad value; close() before connect() is fine', async () => {
    expect(() => new HostTransport({ ...base(), heartbeatIntervalMs: 0 })).toThrow(/members\[0\]\.heartbeatIntervalMs: .* got 0/);
    expect(() => new HostTransport({ ...base(), emulate: { engines: 1.5, serviceTimeMs: 1 } })).toThrow(/emulate\.engines: .* got 1\.5/);
    expect(() => new HostTransport({ ...base(), calls: 'fast' as 'inline' })).toThrow(/members\[0\]\.calls: .* got fast/);
    const t = new HostTransport(base());
    await t.close();
    await expect(t.connect()).rejects.toBeInstanceOf(MemberUnreachableError);
    expect(t.pid).toBeUndefined();
  });

  it('the host exits when its parent goes away', async () => {
    const require = createRequire(import.meta.url);
    const tsx = pathToFileURL(require.resolve('tsx')).href;
    const fixture = fileURLToPath(new URL('./orphan-parent.fixture.ts', import.meta.url));
    const parent = spawn(process.execPath, ['--import', tsx, fixture, token.modulePath, token.env.SOFTHSM2_CONF, token.label], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => parent.once('exit', resolve));
    let out = '';
    parent.stdout.setEncoding('utf8');
    parent.stdout.on('data', (s: string) => (out += s));
    await until(() => out.includes('\n') || parent.exitCode !== null, 'the parent reports its host');
    const { pid, socketPath } = JSON.parse(out) as { pid: number; socketPath: string };
    try {
      expect(isGone(pid)).toBe(false);
      parent.kill('SIGKILL');
      await exited;
      await until(() => isGone(pid), 'the orphaned host exits');
    } finally {
      // Only if the test failed: the host is ours (our fixture started it).
      if (!isGone(pid)) process.kill(pid, 'SIGKILL');
      // The killed parent could not remove its private directory.
      await rm(dirname(socketPath), { recursive: true, force: true });
    }
  });
});
