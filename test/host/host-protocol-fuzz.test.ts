/**
 * A member host facing a client that breaks the protocol: malformed, truncated, oversized
 * and out-of-order frames, a wrong handshake secret, a client that stops reading. Each
 * such connection is closed with a logged reason; nothing is executed for it; the host
 * serves its other clients on. A real `pkcs11-ha host` process over TLS (the clients that
 * reach a remote host are the ones it cannot trust), talked to with raw frames.
 */
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Handle } from '../../src/pkcs11/commands.js';
import { FrameDecoder } from '../../src/rpc/frame-decoder.js';
import { encodeFrame, type HostMessage } from '../../src/rpc/host-protocol.js';
import { RpcClient } from '../../src/rpc/rpc-client.js';
import { tlsConnector } from '../../src/rpc/tls-stream.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { makeCertificates, type TestCertificates } from '../helpers/tls-certificates.js';
import { startTlsHost, type TlsHost } from '../helpers/tls-hosts.js';
import { until } from '../helpers/until.js';

let bed: Testbed;
let certs: TestCertificates;
let host: TlsHost;
let witness: RpcClient;

beforeAll(async () => {
  bed = await createTestbed({ count: 1 });
  certs = await makeCertificates(join(bed.dir, 'tls'), ['app-1', 'fuzzer']);
  host = await startTlsHost(bed.dir, bed.tokens[0]!, certs);
  witness = new RpcClient({ member: 'witness', kind: 'tls', connect: tlsConnector({ url: host.url, ca: certs.ca, ...certs.client('app-1') }), secret: new Uint8Array(0) });
  await witness.connect();
}, 120_000);

afterAll(async () => {
  await witness?.close();
  await host?.stop();
  await bed?.dispose();
});

/** A TLS connection with a valid client certificate, speaking raw bytes. */
async function raw(): Promise<{ socket: TLSSocket; closed: Promise<void>; received: () => Buffer }> {
  const id = certs.client('fuzzer');
  const socket = connect({ host: '127.0.0.1', port: host.port, ca: readFileSync(certs.ca), cert: readFileSync(id.cert), key: readFileSync(id.key), minVersion: 'TLSv1.3' });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  return { socket, closed, received: () => Buffer.concat(chunks) };
}

const frame = (m: HostMessage): Buffer => encodeFrame(m);
const HELLO = frame({ t: 'hello', secret: Buffer.alloc(0) });
function lengthPrefixed(body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

/** Sends `bytes`, and expects the host to close the connection, log `reason`, execute nothing and serve the witness on. */
async function dropped(bytes: readonly Buffer[], reason: RegExp): Promise<void> {
  const served = (await witness.hostStats()).served;
  const lines = host.log.length;
  const c = await raw();
  for (const b of bytes) c.socket.write(b);
  await c.closed;
  await until(() => host.log.slice(lines).some((l) => reason.test(l)), `the host to log ${reason}`, 15_000);
  expect((await witness.hostStats()).served).toBe(served);
  expect(await witness.execute({ op: 'generateRandom', session: await witnessSession(), length: 4 })).toHaveLength(4);
}

let session: Handle | undefined;
async function witnessSession(): Promise<Handle> {
  session ??= await witness.execute({ op: 'openSession', slot: slot() });
  return session;
}
let slotHandle: Handle | undefined;
const slot = (): Handle => slotHandle!;

describe('a member host and a client that breaks the protocol', () => {
  beforeAll(async () => {
    // The witness's slot, from a second client's welcome (the first one's is consumed).
    const probe = new RpcClient({ member: 'probe', kind: 'tls', connect: tlsConnector({ url: host.url, ca: certs.ca, ...certs.client('app-1') }), secret: new Uint8Array(0) });
    slotHandle = (await probe.connect()).slot;
    await probe.close();
  });

  it('a wrong handshake secret', async () => {
    await dropped([frame({ t: 'hello', secret: Buffer.alloc(32, 7) })], /dropped client "fuzzer" .*: wrong handshake secret/);
  }, 30_000);

  it('a request before the hello', async () => {
    await dropped([frame({ t: 'request', id: 1, command: { op: 'generateRandom', session: Buffer.alloc(8), length: 4 } })], /: request message before the hello/);
  }, 30_000);

  it('a frame over the handshake limit before the hello', async () => {
    await dropped([lengthPrefixed(Buffer.alloc(5000))], /: protocol error: .*(exceeds|limit|too)/i);
  }, 30_000);

  it('an oversized frame after the hello', async () => {
    const head = Buffer.alloc(5);
    head.writeUInt32BE(0xffffffff, 0);
    await dropped([HELLO, head], /: protocol error: .*(exceeds|limit|too)/i);
  }, 30_000);

  it('an unknown frame tag, an empty frame, a malformed v8 body', async () => {
    await dropped([HELLO, lengthPrefixed(Buffer.from([9, 1, 2, 3]))], /: protocol error: unknown frame tag 9/);
    await dropped([HELLO, lengthPrefixed(Buffer.alloc(0))], /: protocol error: empty frame/);
    await dropped([HELLO, lengthPrefixed(Buffer.from([0, 0xff, 0x0d, 0x6f, 0x22]))], /: protocol error: (undecodable|malformed)/);
  }, 60_000);

  it('out of order: a second hello, a reply from the client', async () => {
    await dropped([HELLO, HELLO], /: unexpected hello message/);
    await dropped([HELLO, frame({ t: 'reply', id: 3, ok: true, value: undefined })], /: unexpected reply message/);
  }, 60_000);

  it('a truncated frame, then the client goes: closed, nothing executed', async () => {
    const request = frame({ t: 'request', id: 1, command: { op: 'generateRandom', session: Buffer.alloc(8), length: 4 } });
    const served = (await witness.hostStats()).served;
    const lines = host.log.length;
    const c = await raw();
    c.socket.write(HELLO);
    c.socket.end(request.subarray(0, request.length - 3));
    await c.closed;
    await until(() => host.log.slice(lines).some((l) => /client "fuzzer" .* disconnected/.test(l)), 'the host to log the disconnection', 15_000);
    expect((await witness.hostStats()).served).toBe(served);
  }, 30_000);

  it('random bytes after the hello: the host drops the connection or waits, never executes a command, and lives on', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 64 }), async (junk) => {
        // A tag byte of 1 with a random body is a hot request that may decode: keep junk to v8 or unknown tags.
        const body = Buffer.from(junk);
        if (body[0] === 1) body[0] = 7;
        const served = (await witness.hostStats()).served;
        const c = await raw();
        c.socket.write(HELLO);
        c.socket.end(lengthPrefixed(body));
        await c.closed;
        expect((await witness.hostStats()).served).toBe(served);
      }),
      { numRuns: 25 },
    );
  }, 120_000);

  it('a client that stops reading is dropped once its unread answers pass the limit', async () => {
    const lines = host.log.length;
    const c = await raw();
    c.socket.write(HELLO);
    // The answers, decoded (heartbeats may come between them).
    const messages: HostMessage[] = [];
    const decoder = new FrameDecoder({ buffers: 'copy' });
    c.socket.on('data', (chunk: Buffer) => decoder.push(chunk, (m) => messages.push(m)));
    await until(() => messages.some((m) => m.t === 'welcome'), 'the welcome');
    // A session per request: a session runs one command at a time.
    for (let id = 1; id <= 96; id++) c.socket.write(frame({ t: 'request', id, command: { op: 'openSession', slot: slot() } }));
    const handles = (): Buffer[] => messages.flatMap((m) => (m.t === 'reply' && m.ok && Buffer.isBuffer(m.value) ? [m.value] : []));
    await until(() => handles().length === 96, 'the sessions');
    c.socket.pause();
    // 96 answers of 1 MiB, unread: past the 64 MiB limit.
    handles().forEach((session, k) => c.socket.write(frame({ t: 'request', id: 100 + k, command: { op: 'generateRandom', session, length: 1 << 20 } })));
    await until(() => host.log.slice(lines).some((l) => /dropped client "fuzzer" .*: client stopped reading \(\d+ bytes of answers unread\)/.test(l)), 'the host to drop the client that stopped reading', 60_000, 50);
    c.socket.destroy();
    expect(await witness.execute({ op: 'generateRandom', session: await witnessSession(), length: 4 })).toHaveLength(4);
  }, 90_000);
});
