/**
 * The cryptographic operations of one facade session, kept by PKCS#11's rules (one of
 * each kind at a time, `CKR_OPERATION_NOT_INITIALIZED` without an Init, the operation
 * ended by its last call or by an error) over a {@link VirtualSession}.
 *
 * An Init is only recorded: a C_Encrypt, C_Sign, ... that follows it runs as one
 * single-part call, load-balanced over the members holding the key; only an Update (or a
 * Final after an Init) starts the group's multi-part operation, pinned to one member.
 *
 * A context-specific login (C_Login with CKU_CONTEXT_SPECIFIC, for a key with
 * CKA_ALWAYS_AUTHENTICATE) starts the group's operation too, so that the login reaches the
 * member session that runs it, right after its Init there, and the token answers it; the
 * single-part call then runs on that session. The PIN stays with the group's operation
 * (a replay on another member presents it again after its Init) and goes when it ends.
 */
import type { Mechanism } from 'pkcs11js';
import { multipartOf } from '../slot/multipart-session.js';
import type { VirtualSession } from '../slot/virtual-session.js';
import { FacadeError } from './facade-error.js';

/** The kinds of cryptographic operation a session can have open, one each. */
export type OperationKind = 'encrypt' | 'decrypt' | 'sign' | 'verify' | 'digest';

interface Operation {
  readonly mechanism: Mechanism;
  readonly key: number | undefined;
  /** True once the group's multi-part operation began (an Update, a DigestKey, a Final or a context-specific login). */
  started: boolean;
  /** Begun by a context-specific login, with no part fed yet: a single-part call runs on it. */
  single?: boolean;
  /**
   * A single-part result that did not fit the caller's buffer (the operation ended on its
   * member): the call repeated with the same input and room gets it, PKCS#11's two-call idiom.
   */
  held?: { readonly data: Buffer; readonly out: Buffer };
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
    if (op.single === true) return this.#authorised(kind, op, data, extra, room);
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

  /**
   * C_Login(CKU_CONTEXT_SPECIFIC): authorises the operation initialised last (of those with a
   * key) on the member session that runs it, started now if it was not (see the file comment).
   * A refused PIN leaves the operation open, unauthorised, as on a token.
   */
  async contextLogin(pin: string): Promise<void> {
    const kind = [...this.#open.keys()].reverse().find((k) => k !== 'digest');
    if (kind === undefined) throw notInitialized();
    const op = this.#open.get(kind)!;
    if (op.held !== undefined) throw notInitialized();
    const fresh = !op.started;
    await this.#started(kind);
    if (fresh) op.single = true;
    const multipart = multipartOf(this.#session);
    try {
      if (multipart === undefined) throw notInitialized();
      await multipart.authorise(kind, pin);
    } catch (error) {
      // The group's operation ended under it (its member failed and it could not move): so does this one.
      if (!multipart?.open.includes(kind) && this.#open.get(kind) === op) this.#open.delete(kind);
      throw error;
    }
  }

  /** The single-part call on the group's operation a context-specific login began. */
  async #authorised(kind: OperationKind, op: Operation, data: Buffer, extra: Buffer | undefined, room: number | undefined): Promise<Buffer | boolean> {
    let out: Buffer | boolean;
    if (op.held !== undefined) {
      // The operation ended on its member with this result: only the same call can have it.
      if (!op.held.data.equals(data)) {
        this.#open.delete(kind);
        throw new FacadeError('CKR_OPERATION_NOT_INITIALIZED');
      }
      out = op.held.out;
      this.#open.delete(kind);
    } else {
      const multipart = multipartOf(this.#session);
      if (multipart === undefined) throw notInitialized();
      out = await this.#ending(kind, () => multipart.once(kind, data, extra), op, true);
    }
    if (out === false) throw new FacadeError('CKR_SIGNATURE_INVALID');
    if (out === true) return true;
    if (room !== undefined && out.length > room) {
      op.held = { data: Buffer.from(data), out };
      this.#open.set(kind, op);
      throw new FacadeError('CKR_BUFFER_TOO_SMALL');
    }
    return out;
  }

  /** C_*Update: starts the group's multi-part operation at the first part. */
  async update(kind: OperationKind, data: Buffer): Promise<Buffer | undefined> {
    const op = await this.#started(kind);
    op.single = false;
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

  /**
   * C_DigestEncryptUpdate, C_SignEncryptUpdate: one part into the open digest (or sign)
   * and the open encryption; the encrypted part back. The two operations run on members
   * of their own, so the group offers the pair even where a member's module does not.
   */
  async intoBoth(first: 'digest' | 'sign', data: Buffer): Promise<Buffer> {
    if (!this.#open.has(first) || !this.#open.has('encrypt')) throw notInitialized();
    await this.update(first, data);
    return (await this.update('encrypt', data)) ?? Buffer.alloc(0);
  }

  /** C_DecryptDigestUpdate, C_DecryptVerifyUpdate: one part decrypted, and what came out into the open digest (or verify). */
  async decryptInto(second: 'digest' | 'verify', data: Buffer): Promise<Buffer> {
    if (!this.#open.has('decrypt') || !this.#open.has(second)) throw notInitialized();
    const out = (await this.update('decrypt', data)) ?? Buffer.alloc(0);
    if (out.length > 0) await this.update(second, out);
    return out;
  }

  /** C_DigestKey: a key's value as the next part of the open digest. */
  async digestKey(key: number): Promise<void> {
    const op = await this.#started('digest');
    op.single = false;
    await this.#ending('digest', () => this.#session.digestKey(key), op, false);
  }

  /** C_*Final: ends the operation with its last output (or, for verify, the answer). */
  async final(kind: OperationKind, signature: Buffer | undefined): Promise<Buffer | boolean> {
    const op = await this.#started(kind);
    op.single = false;
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
