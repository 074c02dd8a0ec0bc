/** Frames out of a byte stream, as it arrives in chunks of any size. */
import { decodeBody, HostProtocolError, MAX_FRAME_BYTES, type BufferPolicy, type HostMessage } from './host-protocol.js';

/**
 * Reassembles frames from a byte stream: a chunk may hold part of a frame, one frame or
 * many. A large frame arriving in many chunks is copied once, when it is complete.
 */
export class FrameDecoder {
  /** The largest body accepted; a bigger header is a protocol error before any of it is buffered. */
  maxFrameBytes: number;
  readonly #policy: BufferPolicy;
  readonly #chunks: Buffer[] = [];
  #buffered = 0;
  /** Body length of the frame being assembled, once its header is in; -1 before. */
  #bodyLength = -1;

  /**
   * @param options.maxFrameBytes @default {@link MAX_FRAME_BYTES}
   * @param options.buffers how decoded buffers relate to the input @default 'copy'
   */
  constructor(options: { maxFrameBytes?: number; buffers?: BufferPolicy } = {}) {
    this.maxFrameBytes = options.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.#policy = options.buffers ?? 'copy';
  }

  /** Bytes received and not yet part of a decoded frame. */
  get buffered(): number {
    return this.#buffered + (this.#bodyLength >= 0 ? 4 : 0);
  }

  /**
   * Feeds received bytes; calls `onMessage` for each complete frame, in order.
   * @throws HostProtocolError on an oversized or malformed frame (the stream is then
   *   unusable: close the connection)
   */
  push(chunk: Buffer, onMessage: (message: HostMessage) => void): void {
    if (this.#buffered === 0 && this.#bodyLength < 0) {
      // Fast path: whole frames straight out of the chunk, no copies.
      let o = 0;
      while (chunk.length - o >= 4) {
        const length = this.#checkLength(chunk.readUInt32BE(o));
        if (chunk.length - o - 4 < length) break;
        const body = chunk.subarray(o + 4, o + 4 + length);
        o += 4 + length;
        onMessage(decodeBody(body, this.#policy));
      }
      if (o < chunk.length) {
        this.#chunks.push(o === 0 ? chunk : chunk.subarray(o));
        this.#buffered = chunk.length - o;
      }
      return;
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    for (;;) {
      if (this.#bodyLength < 0) {
        if (this.#buffered < 4) return;
        this.#bodyLength = this.#checkLength(this.#take(4).readUInt32BE(0));
      }
      if (this.#buffered < this.#bodyLength) return;
      const body = this.#take(this.#bodyLength);
      this.#bodyLength = -1;
      onMessage(decodeBody(body, this.#policy));
      if (this.#buffered === 0) return;
    }
  }

  #checkLength(length: number): number {
    if (length > this.maxFrameBytes) throw new HostProtocolError(`frame of ${length} bytes exceeds the ${this.maxFrameBytes}-byte limit`);
    return length;
  }

  /** The next `n` buffered bytes (a view when they sit in one chunk, else one copy). */
  #take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    this.#buffered -= n;
    const first = this.#chunks[0]!;
    if (first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    while (o < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, n - o);
      c.copy(out, o, 0, k);
      o += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }
}
