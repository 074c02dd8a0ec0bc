import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { serialize } from 'node:v8';
import { FrameDecoder } from '../../src/rpc/frame-decoder.js';
import { FrameWriter } from '../../src/rpc/frame-writer.js';
import { encodeFrame, HostProtocolError, MAX_FRAME_BYTES, type HostMessage } from '../../src/rpc/host-protocol.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';

const decodeAll = (chunks: readonly Buffer[], decoder = new FrameDecoder()): HostMessage[] => {
  const out: HostMessage[] = [];
  for (const chunk of chunks) decoder.push(chunk, (m) => out.push(m));
  return out;
};

/** Cuts `stream` at the given offsets (any order, duplicates allowed). */
const split = (stream: Buffer, cuts: readonly number[]): Buffer[] => {
  const at = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of [...at, stream.length]) {
    out.push(stream.subarray(from, c));
    from = c;
  }
  return out;
};

const bytes = (max = 64): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
const handle = fc.uint8Array({ minLength: 8, maxLength: 8 }).map((a) => Buffer.from(a));
const id = fc.integer({ min: 0, max: 0xffffffff });
const mechanism = fc.oneof(
  fc.record({ mechanism: fc.integer({ min: 0, max: 0xffffffff }) }),
  fc.record({ mechanism: fc.integer({ min: 0, max: 0xffffffff }), parameter: bytes(32) }),
);

/** Messages whose decoded form equals the original (buffers compare by content). */
const message: fc.Arbitrary<HostMessage> = fc.oneof(
  fc.record({ t: fc.constant('hello' as const), secret: bytes(32) }),
  fc.record({ t: fc.constant('heartbeat' as const), queueDepth: fc.integer({ min: 0, max: 0xffffffff }) }),
  fc.record({ t: fc.constant('stats' as const), id }),
  // Hot requests: the binary path.
  fc.record({
    t: fc.constant('request' as const),
    id,
    command: fc.oneof(
      fc.record({ op: fc.constantFrom('encrypt' as const, 'decrypt' as const, 'sign' as const), session: handle, key: handle, mechanism, data: bytes(300) }),
      fc.record({ op: fc.constant('verify' as const), session: handle, key: handle, mechanism, data: bytes(), signature: bytes() }),
      fc.record({ op: fc.constant('digest' as const), session: handle, mechanism, data: bytes() }),
    ),
  }),
  // Other requests: the v8 path.
  fc.record({
    t: fc.constant('request' as const),
    id,
    command: fc.record({ op: fc.constant('findObjects' as const), session: handle, template: fc.array(fc.record({ type: fc.nat(), value: fc.oneof(bytes(), fc.boolean(), fc.string()) }), { maxLength: 4 }) }),
  }),
  fc.record({ t: fc.constant('reply' as const), id, ok: fc.constant(true as const), value: fc.oneof(bytes(2000), fc.boolean(), fc.constant(undefined)) }),
  fc.record({ t: fc.constant('reply' as const), id, ok: fc.constant(true as const), value: fc.record({ publicKey: handle, privateKey: handle }) }),
  fc.record({
    t: fc.constant('reply' as const),
    id,
    ok: fc.constant(false as const),
    error: fc.record({ rv: fc.nat(), fn: fc.constantFrom('C_Sign', 'C_Encrypt'), message: fc.string({ maxLength: 40 }) }),
  }),
);

describe('host protocol frames', () => {
  it('decodes any split of a stream of frames into the same messages', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (messages, cuts) => {
        const stream = Buffer.concat(messages.map(encodeFrame));
        expect(decodeAll(split(stream, cuts))).toEqual(messages);
      }),
      { numRuns: 300 },
    );
  });

  it('carries the steps of multi-part operations and their answers, Buffers included', () => {
    const session = Buffer.alloc(8, 9);
    const messages: HostMessage[] = [
      { t: 'request', id: 1, command: { op: 'encryptInit', session, mechanism: { mechanism: pkcs11js.CKM_AES_CBC, parameter: Buffer.alloc(16, 4) }, key: Buffer.alloc(8, 5) } },
      { t: 'request', id: 2, command: { op: 'encryptUpdate', session, data: Buffer.alloc(65536, 6) } },
      { t: 'request', id: 3, command: { op: 'encryptFinal', session, pending: 15 } },
      { t: 'request', id: 4, command: { op: 'digestUpdateKey', session, key: Buffer.alloc(8, 7) } },
      { t: 'request', id: 5, command: { op: 'verifyFinal', session, signature: Buffer.from('sig') } },
      { t: 'reply', id: 2, ok: true, value: Buffer.alloc(65536, 8) },
      { t: 'reply', id: 6, ok: true, value: undefined },
      { t: 'reply', id: 7, ok: false, error: { rv: pkcs11js.CKR_OPERATION_NOT_INITIALIZED, fn: 'C_DigestUpdate', message: 'CKR_OPERATION_NOT_INITIALIZED' } },
    ];
    const stream = Buffer.concat(messages.map(encodeFrame));
    expect(decodeAll(split(stream, [3, 70000, 70001, 140000]))).toEqual(messages);
  });

  it('decodes byte by byte and with many frames in one chunk alike', () => {
    const messages: HostMessage[] = [
      { t: 'heartbeat', queueDepth: 3 },
      { t: 'reply', id: 7, ok: true, value: Buffer.from('signature') },
      { t: 'reply', id: 8, ok: true, value: false },
    ];
    const stream = Buffer.concat(messages.map(encodeFrame));
    const single = [...stream].map((b) => Buffer.from([b]));
    expect(decodeAll(single)).toEqual(messages);
    expect(decodeAll([stream])).toEqual(messages);
  });

  it('carries an AES-GCM request on the binary path, Buffers included', () => {
    const iv = Buffer.alloc(12, 1);
    const aad = Buffer.from('header');
    const m: HostMessage = {
      t: 'request',
      id: 0xfffffffe,
      command: { op: 'encrypt', session: Buffer.alloc(8, 2), key: Buffer.alloc(8, 3), mechanism: { mechanism: pkcs11js.CKM_AES_GCM, parameter: { type: pkcs11js.CK_PARAMS_GCM, iv, aad, tagBits: 128 } as never }, data: Buffer.from('plain') },
    };
    const frame = encodeFrame(m);
    expect(frame[4]).toBe(1); // the hot tag, not v8
    const [decoded] = decodeAll([frame]);
    expect(decoded).toMatchObject({ t: 'request', id: 0xfffffffe, command: { op: 'encrypt', data: Buffer.from('plain') } });
    const parameter = (decoded as unknown as { command: { mechanism: { parameter: { iv: Buffer; aad: Buffer; tagBits: number } } } }).command.mechanism.parameter;
    expect(Buffer.isBuffer(parameter.iv)).toBe(true);
    expect(parameter).toMatchObject({ iv, aad, tagBits: 128 });
  });

  it('revives buffers as Buffers on the v8 path', () => {
    const m: HostMessage = { t: 'reply', id: 1, ok: true, value: [Buffer.from('a'), { nested: Buffer.from('b') }] };
    const [decoded] = decodeAll([encodeFrame(m)], new FrameDecoder({ buffers: 'view' }));
    const value = (decoded as { value: [Buffer, { nested: Buffer }] }).value;
    expect(Buffer.isBuffer(value[0])).toBe(true);
    expect(Buffer.isBuffer(value[1].nested)).toBe(true);
  });

  it('copies results under the copy policy, so none pins the received chunk', () => {
    const chunk = Buffer.concat([encodeFrame({ t: 'reply', id: 1, ok: true, value: Buffer.from('abc') }), encodeFrame({ t: 'reply', id: 2, ok: true, value: [Buffer.from('x')] })]);
    const [a, b] = decodeAll([chunk], new FrameDecoder({ buffers: 'copy' })) as { value: unknown }[];
    chunk.fill(0);
    expect(a!.value).toEqual(Buffer.from('abc'));
    expect(b!.value).toEqual([Buffer.from('x')]);
  });

  it('refuses a frame over the cap from its header, before buffering it', () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME_BYTES + 1);
    expect(() => decodeAll([header])).toThrow(HostProtocolError);
    // A lower cap (before the handshake) applies the same way, also across chunks.
    const small = new FrameDecoder({ maxFrameBytes: 100 });
    const frame = encodeFrame({ t: 'hello', secret: Buffer.alloc(200) });
    expect(() => decodeAll([frame.subarray(0, 2), frame.subarray(2, 6)], small)).toThrow(/exceeds the 100-byte limit/);
  });

  it('refuses to encode a frame over the cap', () => {
    const huge = Buffer.alloc(MAX_FRAME_BYTES);
    expect(() => encodeFrame({ t: 'reply', id: 1, ok: true, value: huge })).toThrow(HostProtocolError);
  });

  it('refuses malformed frames: unknown tag, empty body, garbage, wrong message shape', () => {
    const frame = (body: Buffer): Buffer => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(body.length);
      return Buffer.concat([h, body]);
    };
    expect(() => decodeAll([frame(Buffer.from([9, 1, 2]))])).toThrow(/unknown frame tag/);
    expect(() => decodeAll([frame(Buffer.alloc(0))])).toThrow(/empty frame/);
    expect(() => decodeAll([frame(Buffer.from([0, 0xff, 0x0d, 0x6f]))])).toThrow(HostProtocolError);
    expect(() => decodeAll([frame(Buffer.concat([Buffer.from([0]), serialize({ t: 'hello', secret: 'not bytes' })]))])).toThrow(/malformed message/);
    expect(() => decodeAll([frame(Buffer.concat([Buffer.from([0]), serialize([1, 2])]))])).toThrow(/malformed message/);
    expect(() => decodeAll([frame(Buffer.from([1, 0, 0, 0, 1, 5]))])).toThrow(HostProtocolError);
    expect(() => decodeAll([frame(Buffer.from([2, 0, 0, 0, 1, 0, 0, 0, 0, 9]))])).toThrow(HostProtocolError);
  });

  it('coalesces the frames sent in one tick into one write', async () => {
    const writes: Buffer[] = [];
    const writer = new FrameWriter({ write: (chunk: Buffer) => writes.push(chunk) });
    const messages: HostMessage[] = [
      { t: 'heartbeat', queueDepth: 1 },
      { t: 'reply', id: 1, ok: true, value: Buffer.from('x') },
      { t: 'stats', id: 2 },
    ];
    for (const m of messages) writer.send(m);
    // Replies that resolve in this tick's microtasks join the same write.
    await Promise.resolve();
    writer.send({ t: 'reply', id: 3, ok: true, value: true });
    expect(writes).toHaveLength(0);
    await new Promise((resolve) => process.nextTick(resolve));
    expect(writes).toHaveLength(1);
    expect(decodeAll(writes)).toEqual([...messages, { t: 'reply', id: 3, ok: true, value: true }]);
  });

  it('drops what is queued for a destroyed sink', async () => {
    const writes: Buffer[] = [];
    const writer = new FrameWriter({ write: (chunk: Buffer) => writes.push(chunk), destroyed: true });
    writer.send({ t: 'heartbeat', queueDepth: 1 });
    writer.flush();
    expect(writes).toHaveLength(0);
  });
});
