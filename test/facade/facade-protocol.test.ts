/**
 * The synchronous answer in shared memory (facade-protocol.ts): what goes there, what
 * takes the port, and that a failure after a shared answer is never read as that answer.
 */
import { describe, expect, it } from 'vitest';
import { readSharedReply, SHARED_REPLY_BYTES, SIGNAL_BYTES, writeSharedReply, type CallReply } from '../../src/facade/facade-protocol.js';

function pair(): { shared: SharedArrayBuffer; signal: Int32Array } {
  const shared = new SharedArrayBuffer(SIGNAL_BYTES);
  return { shared, signal: new Int32Array(shared) };
}

const ok = (value: unknown): CallReply => ({ id: 1, ok: true, value });

describe('answers in shared memory', () => {
  it.each([
    ['a signature', new Uint8Array(Buffer.from('30440220', 'hex'))],
    ['empty bytes', new Uint8Array(0)],
    ['bytes at the limit', new Uint8Array(SHARED_REPLY_BYTES).fill(7)],
    ['a handle number', 42],
    ['a large number', 2 ** 40 + 3],
    ['true', true],
    ['false', false],
    ['undefined', undefined],
  ])('%s is read back as written (bytes as a Buffer copy)', (_, value) => {
    const { shared, signal } = pair();
    expect(writeSharedReply(shared, signal, ok(value))).toBe(true);
    const read = readSharedReply(shared, signal);
    expect(read).not.toBe('port');
    const got = (read as { value: unknown }).value;
    if (value instanceof Uint8Array) {
      expect(Buffer.isBuffer(got)).toBe(true);
      expect(Buffer.from(value).equals(got as Buffer)).toBe(true);
      // A copy: the next answer overwrites the shared bytes, not this one.
      writeSharedReply(shared, signal, ok(new Uint8Array(value.length).fill(9)));
      expect(Buffer.from(value).equals(got as Buffer)).toBe(true);
    } else expect(got).toBe(value);
  });

  it.each([
    ['bytes past the limit', ok(new Uint8Array(SHARED_REPLY_BYTES + 1))],
    ['an object', ok({ publicKey: 1, privateKey: 2 })],
    ['an array', ok([1, 2, 3])],
    ['null', ok(null)],
    ['a failure', { id: 1, ok: false, failure: { kind: 'pkcs11', ckr: 'CKR_KEY_HANDLE_INVALID', rv: 0x60 } } as CallReply],
  ])('%s takes the port, even right after an answer in shared memory', (_, reply) => {
    const { shared, signal } = pair();
    writeSharedReply(shared, signal, ok(new Uint8Array([1, 2, 3])));
    expect(writeSharedReply(shared, signal, reply)).toBe(false);
    expect(readSharedReply(shared, signal)).toBe('port');
  });
});
