/**
 * Taking up a block-cipher operation on another member without its parts: AES-CBC,
 * AES-CBC-PAD, AES-ECB and AES-CTR, encryption and decryption. After N whole blocks, such
 * an operation's state is its key, the last ciphertext block (the next block's IV; ECB has
 * none; CTR: its counter block moved on by N) and the input the module has not turned into
 * output yet (a partial block, or the block CBC-PAD decryption holds back for its Final).
 * A member taking it up needs an Init with that block as its IV (or counter) and those few
 * bytes, not every part that went before: the operation keeps a few blocks whatever its
 * length, and has no replay bound. CTR answers every byte at once, so its partial block is
 * fed again and must give the bytes already returned (they are compared).
 *
 * The module that fed it may hold back more than that (a token may withhold whole blocks):
 * then the resume says why it cannot take the operation up, and the caller gets the typed
 * restart error, never a wrong result.
 */
import { endianness } from 'node:os';
import type { Mechanism } from 'pkcs11js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { OperationKind } from './replay-rules.js';

/** AES block size. */
const BLOCK = 16;
/** Input bytes kept: the chaining block and what a module may hold back (a block and a partial one). */
const INPUT_KEPT = 4 * BLOCK;

type Mode = 'cbc' | 'ecb' | 'ctr';

const MODES = new Map<number, Mode>([
  [pkcs11js.CKM_AES_CBC, 'cbc'],
  [pkcs11js.CKM_AES_CBC_PAD, 'cbc'],
  [pkcs11js.CKM_AES_ECB, 'ecb'],
  [pkcs11js.CKM_AES_CTR, 'ctr'],
]);

/** How another member takes the operation up: its Init's mechanism, then `feed` as one Update, which must give `expect` (bytes already returned). */
export interface Resume {
  readonly mechanism: Mechanism;
  readonly feed: Buffer;
  readonly expect: Buffer;
}

/** Where a resumable cipher operation stands: bytes in and out, and the last few of each. */
export class CipherPosition {
  readonly #mode: Mode;
  readonly #encrypt: boolean;
  readonly #mechanism: Mechanism;
  #in = 0;
  #out = 0;
  #inTail: Buffer = Buffer.alloc(0);
  #outTail: Buffer = Buffer.alloc(0);

  private constructor(mode: Mode, encrypt: boolean, mechanism: Mechanism) {
    this.#mode = mode;
    this.#encrypt = encrypt;
    this.#mechanism = mechanism;
  }

  /** A position for an operation that can be resumed this way, else undefined (it is replayed from its kept parts). */
  static of(kind: OperationKind, mechanism: Mechanism): CipherPosition | undefined {
    if (kind !== 'encrypt' && kind !== 'decrypt') return undefined;
    const mode = MODES.get(mechanism.mechanism);
    if (mode === undefined) return undefined;
    const p = mechanism.parameter;
    if (mode === 'cbc' && !(Buffer.isBuffer(p) && p.length === BLOCK)) return undefined;
    // CK_AES_CTR_PARAMS as the raw struct (see mechanism-parameters.ts): a CK_ULONG, then the counter block.
    if (mode === 'ctr' && !(Buffer.isBuffer(p) && (p.length === BLOCK + 4 || p.length === BLOCK + 8))) return undefined;
    return new CipherPosition(mode, kind === 'encrypt', mechanism);
  }

  /** Counts a part the module took and the output it gave (copies the last bytes: the caller may reuse its buffers). */
  advance(input: Buffer, output: Buffer | undefined): void {
    this.#in += input.length;
    this.#inTail = lastBytes(this.#inTail, input, INPUT_KEPT);
    if (output !== undefined && output.length > 0) {
      this.#out += output.length;
      this.#outTail = lastBytes(this.#outTail, output, BLOCK);
    }
  }

  /** How another member takes the operation up from here, or why it cannot. */
  resume(): Resume | string {
    if (this.#mode === 'ctr') return this.#resumeCtr();
    const held = this.#in - this.#out;
    if (this.#out % BLOCK !== 0 || held < 0) return `the member gave ${this.#out} bytes of output for ${this.#in} of input, not whole blocks`;
    // Decryption chains on the last ciphertext block it took in, so that one is needed too.
    const needed = held + (this.#mode === 'cbc' && !this.#encrypt && this.#out > 0 ? BLOCK : 0);
    if (needed > this.#inTail.length) return `the member held back ${held} bytes of input, more than a resume takes up`;
    const feed = Buffer.from(this.#inTail.subarray(this.#inTail.length - held));
    const expect = Buffer.alloc(0);
    if (this.#mode === 'ecb' || this.#out === 0) return { mechanism: this.#mechanism, feed, expect };
    const chain = this.#encrypt ? this.#outTail : this.#inTail.subarray(this.#inTail.length - held - BLOCK, this.#inTail.length - held);
    return { mechanism: { mechanism: this.#mechanism.mechanism, parameter: Buffer.from(chain) }, feed, expect };
  }

  /** CTR: the counter moved on by the whole blocks answered; the partial block after them fed again. */
  #resumeCtr(): Resume | string {
    if (this.#in !== this.#out) return `the member answered ${this.#out} bytes of ${this.#in} of CTR input`;
    const partial = this.#out % BLOCK;
    const feed = Buffer.from(this.#inTail.subarray(this.#inTail.length - partial));
    const expect = Buffer.from(this.#outTail.subarray(this.#outTail.length - partial));
    const old = this.#mechanism.parameter as Buffer;
    const at = old.length - BLOCK;
    const bits = at === 8 ? Number(endianness() === 'LE' ? old.readBigUInt64LE(0) : old.readBigUInt64BE(0)) : endianness() === 'LE' ? old.readUInt32LE(0) : old.readUInt32BE(0);
    // The low `bits` bits of the block count (CK_AES_CTR_PARAMS). They never wrap: a counter
    // value used twice gives the same key stream (a token refuses to go past the last one).
    const mask = (1n << BigInt(bits)) - 1n;
    const block = BigInt(`0x${old.subarray(at).toString('hex')}`);
    const counter = (block & mask) + BigInt(Math.floor(this.#out / BLOCK));
    if (counter > mask) return `the counter of ${bits} bits has run out`;
    const moved = (block & ~mask) | counter;
    const parameter = Buffer.from(old);
    Buffer.from(moved.toString(16).padStart(2 * BLOCK, '0'), 'hex').copy(parameter, at);
    return { mechanism: { mechanism: this.#mechanism.mechanism, parameter }, feed, expect };
  }
}

/** The last `n` bytes of `kept` followed by `more`, in a buffer of their own. */
function lastBytes(kept: Buffer, more: Buffer, n: number): Buffer {
  if (more.length >= n) return Buffer.from(more.subarray(more.length - n));
  const joined = Buffer.concat([kept, more]);
  return joined.length > n ? joined.subarray(joined.length - n) : joined;
}
