/**
 * The host's load report in the member-host protocol: `others` (commands the host runs for
 * its other clients) in every answer, the binary hot reply as well as the v8 one, and in
 * heartbeats; absent when 0, so a lone client's replies keep their plain shape; and what
 * the client makes of it (`countHostLoad`, a report that ages out).
 */
import { Duplex, PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { decodeBody, encodeFrame, HostProtocolError, type HostMessage } from '../../src/rpc/host-protocol.js';
import { RpcClient } from '../../src/rpc/rpc-client.js';
import { FakeClock } from '../helpers/fake-clock.js';

const roundTrip = (m: HostMessage): HostMessage => decodeBody(encodeFrame(m).subarray(4), 'copy');

describe('the load report on the wire', () => {
  it.each([
    { t: 'reply', id: 7, ok: true, value: Buffer.from('sig'), others: 12 },
    { t: 'reply', id: 7, ok: true, value: true, others: 0xffffffff },
    { t: 'reply', id: 7, ok: true, value: undefined, others: 3 },
    { t: 'reply', id: 7, ok: true, value: { publicKey: Buffer.alloc(8), privateKey: Buffer.alloc(8) }, others: 5 },
    { t: 'reply', id: 7, ok: false, error: { rv: 0xa0, fn: 'C_Login', message: 'no' }, others: 2 },
    { t: 'heartbeat', queueDepth: 9, others: 4 },
    { t: 'welcome', token: { slot: Buffer.alloc(8), label: 'a', serial: '1', manufacturer: 'x', model: 'y' }, heartbeatIntervalMs: 200 },
  ] as HostMessage[])('%j round-trips', (m) => {
    expect(roundTrip(m)).toEqual(m);
  });

  it('leaves `others` out when it is 0', () => {
    expect(roundTrip({ t: 'reply', id: 1, ok: true, value: Buffer.from('x'), others: 0 })).toEqual({ t: 'reply', id: 1, ok: true, value: Buffer.from('x') });
    expect(roundTrip({ t: 'reply', id: 1, ok: true, value: false })).not.toHaveProperty('others');
  });

  it('refuses an `others` that is not an unsigned 32-bit number', () => {
    const frame = encodeFrame({ t: 'heartbeat', queueDepth: 1, others: -1 } as HostMessage);
    expect(() => decodeBody(frame.subarray(4), 'copy')).toThrow(HostProtocolError);
  });

  it('refuses a welcome whose heartbeat interval is not a positive whole number', () => {
    for (const heartbeatIntervalMs of [0, -5, 1.5, '200']) {
      const frame = encodeFrame({ t: 'welcome', token: { slot: Buffer.alloc(8), label: 'a', serial: '1', manufacturer: 'x', model: 'y' }, heartbeatIntervalMs } as unknown as HostMessage);
      expect(() => decodeBody(frame.subarray(4), 'copy')).toThrow(HostProtocolError);
    }
  });

  it('keeps a load heartbeat small', () => {
    expect(encodeFrame({ t: 'heartbeat', queueDepth: 40, others: 32 }).length).toBeLessThanOrEqual(64);
  });
});

describe("the client's view of it", () => {
  async function connected(
    countHostLoad: boolean,
    options: { hostLoadTtlMs?: number; heartbeatIntervalMs?: number } = { hostLoadTtlMs: 1000 },
  ): Promise<{ client: RpcClient; host: PassThrough; clock: FakeClock; sent: () => number[] }> {
    const clock = new FakeClock(0);
    const toClient = new PassThrough();
    const toHost = new PassThrough();
    const ids: number[] = [];
    toHost.on('data', (chunk: Buffer) => {
      // Request ids of the frames the client sent (one frame per write here).
      const m = decodeBody(chunk.subarray(4), 'copy');
      if (m.t === 'request') ids.push(m.id);
    });
    const stream = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        toHost.write(chunk);
        cb();
      },
    });
    toClient.on('data', (c: Buffer) => stream.push(c));
    const ttl = options.hostLoadTtlMs === undefined ? {} : { hostLoadTtlMs: options.hostLoadTtlMs };
    const client = new RpcClient({ member: 'm', connect: () => stream, secret: new Uint8Array(0), clock, countHostLoad, ...ttl });
    const connecting = client.connect();
    const token = { slot: Buffer.alloc(8), label: 'a', serial: '1', manufacturer: 'x', model: 'y' };
    const interval = options.heartbeatIntervalMs;
    toClient.write(encodeFrame(interval === undefined ? { t: 'welcome', token } : { t: 'welcome', token, heartbeatIntervalMs: interval }));
    await connecting;
    return { client, host: toClient, clock, sent: () => ids };
  }

  it('counts what the host reports while the report is fresh, only with countHostLoad', async () => {
    for (const count of [true, false]) {
      const { client, host, clock, sent } = await connected(count);
      const running = client.execute({ op: 'generateRandom', session: Buffer.alloc(8), length: 1 });
      await new Promise((r) => setImmediate(r));
      host.write(encodeFrame({ t: 'reply', id: sent()[0]!, ok: true, value: Buffer.from([1]), others: 6 }));
      await running;
      expect(client.hostLoad).toBe(count ? 6 : 0);
      host.write(encodeFrame({ t: 'heartbeat', queueDepth: 9, others: 4 }));
      await new Promise((r) => setImmediate(r));
      expect(client.hostLoad).toBe(count ? 4 : 0);
      clock.advance(1001);
      expect(client.hostLoad).toBe(0);
      await client.close();
    }
  });

  const tick = () => new Promise((r) => setImmediate(r));

  it('takes heartbeats with nothing pending: an idle client of a busy host keeps its report fresh past 1 s, and a 0 clears it', async () => {
    const { client, host, clock } = await connected(true, { heartbeatIntervalMs: 500 });
    const beats: number[] = [];
    client.onHeartbeat((depth) => beats.push(depth));
    // Every heartbeat interval for 4 s: the report never ages out between two of them.
    for (let t = 0; t < 8; t++) {
      host.write(encodeFrame({ t: 'heartbeat', queueDepth: 20, others: 20 }));
      await tick();
      expect(client.hostLoad).toBe(20);
      clock.advance(500);
      expect(client.hostLoad).toBe(20);
    }
    expect(client.pending).toBe(0);
    expect(beats).toHaveLength(8);
    host.write(encodeFrame({ t: 'heartbeat', queueDepth: 0 }));
    await tick();
    expect(client.hostLoad).toBe(0);
    // Still connected and serving.
    const running = client.execute({ op: 'generateRandom', session: Buffer.alloc(8), length: 1 });
    expect(client.pending).toBe(1);
    await client.close();
    await expect(running).rejects.toThrow();
  });

  it('counts a report for 3 heartbeat intervals of the host (as its welcome says; 1000 ms when it says none), unless told otherwise', async () => {
    for (const [options, ttl] of [
      [{ heartbeatIntervalMs: 200 }, 600],
      [{}, 3000],
      [{ heartbeatIntervalMs: 200, hostLoadTtlMs: 1000 }, 1000],
    ] as const) {
      const { client, host, clock } = await connected(true, options);
      host.write(encodeFrame({ t: 'heartbeat', queueDepth: 3, others: 3 }));
      await tick();
      clock.advance(ttl);
      expect(client.hostLoad).toBe(3);
      clock.advance(1);
      expect(client.hostLoad).toBe(0);
      await client.close();
    }
  });
});
