/** Frames onto a byte stream, with the writes of one tick coalesced. */
import { appendFrame, type HostMessage } from './host-protocol.js';

/** Where a {@link FrameWriter} writes: a socket, or a fake in tests. */
export interface FrameSink {
  write(chunk: Buffer): unknown;
  readonly destroyed?: boolean;
}

/**
 * Sends messages, coalescing all frames sent in one tick into one write: a socket write
 * is a system call, and commands arrive (and their replies leave) in bursts.
 */
export class FrameWriter {
  readonly #sink: FrameSink;
  #parts: Buffer[] = [];
  #bytes = 0;
  #messages = 0;
  #scheduled = false;

  constructor(sink: FrameSink) {
    this.#sink = sink;
  }

  /**
   * Queues a message; it leaves at the end of this tick.
   * @throws HostProtocolError when its frame would exceed `MAX_FRAME_BYTES` (nothing is queued)
   */
  send(m: HostMessage): void {
    this.#bytes += appendFrame(m, this.#parts);
    this.#messages++;
    if (!this.#scheduled) {
      this.#scheduled = true;
      // nextTick runs after the whole microtask cascade of this tick: every reply that
      // resolves in it joins the write.
      process.nextTick(() => this.flush());
    }
  }

  /** Messages queued and not yet written. */
  get queued(): number {
    return this.#messages;
  }

  /** Writes whatever is queued now. */
  flush(): void {
    this.#scheduled = false;
    const parts = this.#parts;
    if (parts.length === 0) return;
    const bytes = this.#bytes;
    this.#parts = [];
    this.#bytes = 0;
    this.#messages = 0;
    if (this.#sink.destroyed === true) return;
    this.#sink.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes));
  }
}

