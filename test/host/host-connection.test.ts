/**
 * HostConnection's writes of inline answers, on a fake socket and a fake clock: answers
 * leave once they stand for INLINE_FLUSH_MS of inline work, else at the end of the tick.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { HostConnection, INLINE_FLUSH_MS, type ConnectionHost } from '../../src/host/host-connection.js';
import { FrameDecoder } from '../../src/rpc/frame-decoder.js';
import type { HostMessage } from '../../src/rpc/host-protocol.js';
import { FakeClock } from '../helpers/fake-clock.js';

class FakeSocket extends EventEmitter {
  destroyed = false;
  readonly writes: Buffer[] = [];
  write(chunk: Buffer): boolean {
    this.writes.push(chunk);
    return true;
  }
  destroy(): void {
    this.destroyed = true;
    this.emit('close');
  }
}

const decodeAll = (chunks: readonly Buffer[]): HostMessage[] => {
  const out: HostMessage[] = [];
  const decoder = new FrameDecoder();
  for (const chunk of chunks) decoder.push(chunk, (m) => out.push(m));
  return out;
};
const reply = (id: number): HostMessage => ({ t: 'reply', id, ok: true, value: Buffer.from([id]) });
/** Inline work in units of the flush threshold. */
const F = INLINE_FLUSH_MS;
const nextTick = () => new Promise((resolve) => process.nextTick(resolve));

describe('HostConnection: writes of inline answers', () => {
  const connect = () => {
    const socket = new FakeSocket();
    const host = { forget: () => undefined } as unknown as ConnectionHost;
    const connection = new HostConnection(socket as unknown as Duplex, host, new FakeClock());
    return { socket, connection };
  };

  it('writes once the queued answers stand for INLINE_FLUSH_MS of work, in one write; the rest at the end of the tick', async () => {
    const { socket, connection } = connect();
    for (const id of [1, 2]) {
      connection.send(reply(id));
      connection.inlineWork(0.4 * F);
    }
    expect(socket.writes).toHaveLength(0);
    connection.send(reply(3));
    connection.inlineWork(0.4 * F); // 1.2 x the threshold behind three answers
    expect(socket.writes).toHaveLength(1);
    expect(decodeAll(socket.writes)).toEqual([reply(1), reply(2), reply(3)]);
    connection.send(reply(4));
    connection.inlineWork(0.4 * F);
    expect(socket.writes).toHaveLength(1);
    await nextTick();
    expect(socket.writes).toHaveLength(2);
    expect(decodeAll(socket.writes.slice(1))).toEqual([reply(4)]);
    connection.destroy();
  });

  it('counts afresh after the end-of-tick write: work written out is not counted again', async () => {
    const { socket, connection } = connect();
    connection.send(reply(1));
    connection.inlineWork(0.9 * F);
    await nextTick();
    expect(socket.writes).toHaveLength(1);
    connection.send(reply(2));
    connection.inlineWork(0.9 * F); // 0.9 x the threshold, not 1.8: no write yet
    expect(socket.writes).toHaveLength(1);
    connection.send(reply(3));
    connection.inlineWork(0.2 * F);
    expect(socket.writes).toHaveLength(2);
    expect(decodeAll(socket.writes)).toEqual([reply(1), reply(2), reply(3)]);
    connection.destroy();
  });

  it('counts answers, not the buffers they are made of: an error answer after an end-of-tick write starts afresh', async () => {
    const { socket, connection } = connect();
    connection.send(reply(1));
    connection.inlineWork(0.9 * F);
    await nextTick();
    expect(socket.writes).toHaveLength(1);
    // An error answer travels in another encoding than a byte result (more than one buffer).
    const failure: HostMessage = { t: 'reply', id: 2, ok: false, error: { rv: 0x100, fn: 'C_Sign', message: 'CKR_USER_NOT_LOGGED_IN' } };
    connection.send(failure);
    connection.inlineWork(0.9 * F);
    expect(socket.writes).toHaveLength(1);
    await nextTick();
    expect(decodeAll(socket.writes)).toEqual([reply(1), failure]);
    connection.destroy();
  });

  it('a single call of INLINE_FLUSH_MS or more is written at once', () => {
    const { socket, connection } = connect();
    connection.send(reply(1));
    connection.inlineWork(1.5 * F);
    expect(decodeAll(socket.writes)).toEqual([reply(1)]);
    connection.destroy();
  });
});
