/**
 * The cryptographic operations of one facade session, kept by PKCS#11's rules (one of
 * each kind at a time, `CKR_OPERATION_NOT_INITIALIZED` without an Init, the operation
 * ended by its last call or by an error) over a {@link VirtualSession}.
 *
 * An Init is only recorded: a C_Encrypt, C_Sign, ... that follows it runs as one
 * single-part call, load-balanced over the members holding the key; only an Update (or a
 * Final after an Init) starts the group's multi-part operation, pinned to one member.
 */
import type { Mechanism } from 'pkcs11js';
import type { VirtualSession } from '../slot/virtual-session.js';
import { FacadeError } from './facade-error.js';

/** The kinds of cryptographic operation a session can have open, one each. */
export type OperationKind = 'encrypt' | 'decrypt' | 'sign' | 'verify' | 'digest';

interface Operation {
  readonly mechanism: Mechanism;
  readonly key: number | undefined;
  /** True once the group's multi-part operation began (an Update, a DigestKey or a Final). */
  started: boolean;
}

const notInitialized = (): FacadeError => new FacadeError('CKR_OPERATION_NOT_INITIALIZED');

/** The open operations of one session. */
export class SessionOperations {
  readonly #session: VirtualSession;
  readonly #open = new Map<OperationKind, Operation>();

  constructor(session: VirtualSession) {
    this.#session = session;
  }

  /** C_*Init: records the operation. */
  init(kind: OperationKind, mechanism: Mechanism, key: number | undefined): void {
    if (this.#open.has(kind)) throw new FacadeError('CKR_OPERATION_ACTIVE');
    this.#open.set(kind, { mechanism, key, started: false });
  }

  /**
   * The single-part call (C_Encrypt, C_Sign, ...): ends the operation, except when the
   * caller's buffer is too small (`room`), which leaves it open as PKCS#11 does.
   */
  async single(kind: OperationKind, data: Buffer, extra: Buffer | undefined, room: number | undefined): Promise<Buffer | boolean> {
    const op = this.#open.get(kind);
    if (op === undefined) throw notInitialized();
    if (op.started) throw new FacadeError('CKR_OPERATION_ACTIVE');
    this.#open.delete(kind);
    const s = this.#session;
    const key = op.key ?? 0;
    let out: Buffer | boolean;
    switch (kind) {
      case 'encrypt':
        out = await s.encrypt(op.mechanism, key, data);
        break;
      case 'decrypt':
        out = await s.decrypt(op.mechanism, key, data);
        break;
      case 'sign':
        out = await s.sign(op.mechanism, key, data);
        break;
      case 'verify':
        if (!(await s.verify(op.mechanism, key, data, extra ?? Buffer.alloc(0)))) throw new FacadeError('CKR_SIGNATURE_INVALID');
        return true;
      case 'digest':
        out = await s.digest(op.mechanism, data);
        break;
    }
    if (room !== undefined && out.length > room) {
      this.#open.set(kind, op);
      throw new FacadeError('CKR_BUFFER_TOO_SMALL');
    }
    return out;
  }

  /** C_*Update: starts the group's multi-part operation at the first part. */
  async update(kind: OperationKind, data: Buffer): Promise<Buffer | undefined> {
    const op = await this.#started(kind);
    const s = this.#session;
    return this.#ending(kind, async () => {
      switch (kind) {
        case 'encrypt':
          return s.encryptUpdate(data);
        case 'decrypt':
          return s.decryptUpdate(data);
        case 'sign':
          return void (await s.signUpdate(data));
        case 'verify':
          return void (await s.verifyUpdate(data));
        case 'digest':
          return void (await s.digestUpdate(data));
      }
    }, op, false);
  }

  /** C_DigestKey: a key's value as the next part of the open digest. */
  async digestKey(key: number): Promise<void> {
    const op = await this.#started('digest');
    await this.#ending('digest', () => this.#session.digestKey(key), op, false);
  }

  /** C_*Final: ends the operation with its last output (or, for verify, the answer). */
  async final(kind: OperationKind, signature: Buffer | undefined): Promise<Buffer | boolean> {
    const op = await this.#started(kind);
    const s = this.#session;
    const out = await this.#ending(kind, async (): Promise<Buffer | boolean> => {
      switch (kind) {
        case 'encrypt':
          return s.encryptFinal();
        case 'decrypt':
          return s.decryptFinal();
        case 'sign':
          return s.signFinal();
        case 'verify':
          return s.verifyFinal(signature ?? Buffer.alloc(0));
        case 'digest':
          return s.digestFinal();
      }
    }, op, true);
    if (out === false) throw new FacadeError('CKR_SIGNATURE_INVALID');
    return out;
  }

  /** Forgets every operation (the session closed or logged out: the group ended its own). */
  clear(): void {
    this.#open.clear();
  }

  async #started(kind: OperationKind): Promise<Operation> {
    const op = this.#open.get(kind);
    if (op === undefined) throw notInitialized();
    if (op.started) return op;
    const s = this.#session;
    const key = op.key ?? 0;
    try {
      if (kind === 'encrypt') await s.encryptInit(op.mechanism, key);
      else if (kind === 'decrypt') await s.decryptInit(op.mechanism, key);
      else if (kind === 'sign') await s.signInit(op.mechanism, key);
      else if (kind === 'verify') await s.verifyInit(op.mechanism, key);
      else await s.digestInit(op.mechanism);
    } catch (error) {
      this.#open.delete(kind);
      throw error;
    }
    op.started = true;
    return op;
  }

  /** Runs a step; an error, or the last step, ends the operation. */
  async #ending<T>(kind: OperationKind, step: () => Promise<T>, op: Operation, last: boolean): Promise<T> {
    try {
      const out = await step();
      if (last && this.#open.get(kind) === op) this.#open.delete(kind);
      return out;
    } catch (error) {
      if (this.#open.get(kind) === op) this.#open.delete(kind);
      throw error;
    }
  }
}
