/**
 * The multi-part operations of one virtual session, under PKCS#11's session rules: at most
 * one active operation of each kind (a second Init gives CKR_OPERATION_ACTIVE), an Update
 * or Final without Init gives CKR_OPERATION_NOT_INITIALIZED, an error in a step ends the
 * operation, and closing the session or logging out ends every open one on its member.
 * Operations of different kinds may be open at once, each on a session of its own.
 */
import type { ObjectHandle, VirtualObject } from '../catalog/catalog.js';
import { ClosedError, InvalidArgumentError, InvalidHandleError } from '../errors/ha-error.js';
import { toMechanism, type MechanismInput } from '../pkcs11/mechanism-table.js';
import { FailoverPolicy } from '../routing/failover-policy.js';
import { findHolders } from '../routing/router.js';
import { functionName, MultipartOperation, sessionError, type MultipartSettings } from './multipart-operation.js';
import { ReplayBudget } from './replay-buffer.js';
import type { OperationKind } from './replay-rules.js';
import type { SlotContext } from './slot-context.js';

/** Bytes one operation keeps for a replay, by default. */
export const DEFAULT_OPERATION_REPLAY_BYTES = 1024 * 1024;
/** Bytes all operations of a group keep for replays, by default. */
export const DEFAULT_GROUP_REPLAY_BYTES = 4 * 1024 * 1024;

function bytes(value: unknown, what: string): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new InvalidArgumentError(`${what} must be a Buffer or Uint8Array, got ${value === null ? 'null' : typeof value}`);
}

/** The multi-part operations of each virtual session (see {@link multipartOf}). */
const OF_SESSION = new WeakMap<object, MultipartSession>();

/**
 * The multi-part operations of a virtual session: what the pkcs11js facade needs beyond the
 * session's API (the context-specific login, the single-part call on an operation it authorised).
 *
 * @internal
 */
export function multipartOf(session: object): MultipartSession | undefined {
  return OF_SESSION.get(session);
}

/** One virtual session's open multi-part operations, by kind. */
export class MultipartSession {
  readonly #context: () => SlotContext;
  /** Open operations; a promise while the Init runs (a second Init meanwhile is refused). */
  readonly #open = new Map<OperationKind, MultipartOperation | Promise<MultipartOperation>>();
  #settings: MultipartSettings | undefined;
  #ending = false;

  /**
   * @param context the session's context, read on first use
   * @param owner the virtual session, for {@link multipartOf}
   */
  constructor(context: () => SlotContext, owner?: object) {
    this.#context = context;
    if (owner !== undefined) OF_SESSION.set(owner, this);
  }

  /** Kinds of operation open now. */
  get open(): OperationKind[] {
    return [...this.#open.keys()];
  }

  /**
   * C_<Kind>Init: starts an operation of `kind` with `key` (none for a digest).
   *
   * @throws {@link Pkcs11Error} CKR_OPERATION_ACTIVE when one of that kind is open
   */
  async init(kind: OperationKind, mechanism: MechanismInput, key?: ObjectHandle): Promise<void> {
    const context = this.#checked();
    const m = toMechanism(mechanism);
    // Every kind but a digest needs a key: a missing one is a bad handle, not a keyless operation.
    const object = kind === 'digest' ? undefined : this.#object(key as ObjectHandle);
    if (this.#open.has(kind)) throw sessionError('CKR_OPERATION_ACTIVE', functionName(kind, 'Init'));
    const starting = (async () => {
      const regain = (objects: readonly VirtualObject[]): Promise<void> => findHolders(context.discovery, objects, (i) => context.membership.at(i)?.serving === true);
      if (object !== undefined) await regain([object]);
      // An operation that ends (a failed step, its Final) is forgotten at once: no handler per step.
      return MultipartOperation.begin({ ...this.#settingsOf(context), members: context.membership.all, primary: context.membership.primary, regain }, kind, m, object, (op) => this.#forget(kind, op));
    })();
    this.#open.set(kind, starting);
    try {
      const op = await starting;
      if (this.#open.get(kind) === starting) this.#open.set(kind, op);
      // Closed or logged out while the Init ran: the operation ends with the session.
      else await op.end();
    } catch (error) {
      if (this.#open.get(kind) === starting) this.#open.delete(kind);
      throw error;
    }
  }

  /**
   * C_<Kind>Update: feeds a part; encrypt and decrypt give their output (possibly empty).
   * @param out encrypt and decrypt: where the output goes, as in pkcs11js (see `MultipartOperation.update`)
   */
  update(kind: OperationKind, data: Uint8Array, out?: Uint8Array): Promise<Buffer | undefined> {
    let d: Buffer;
    let o: Buffer | undefined;
    try {
      d = bytes(data, 'data');
      o = out === undefined ? undefined : bytes(out, 'out');
      this.#checked();
      const entry = this.#open.get(kind);
      // The usual case, without the promises of #run: the operation is open (it forgets
      // itself here when a step fails: see init).
      if (entry instanceof MultipartOperation && !this.#ending) return entry.update(d, o);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    return this.#run(kind, 'Update', (op) => op.update(d, o));
  }

  /** C_DigestKey: a key's value as the next part of the open digest. */
  async digestKey(key: ObjectHandle): Promise<void> {
    this.#checked();
    const object = this.#object(key);
    return this.#run('digest', 'Key', (op) => op.digestKey(object));
  }

  /** C_<Kind>Final: the operation's last output, signature or digest (whole), or whether the signature verified. */
  async final(kind: OperationKind, signature?: Uint8Array): Promise<Buffer | boolean> {
    const s = kind === 'verify' ? bytes(signature, 'signature') : undefined;
    try {
      return await this.#run(kind, 'Final', (op) => op.final(s));
    } finally {
      this.#forget(kind);
    }
  }

  /**
   * C_Login(CKU_CONTEXT_SPECIFIC) for the open operation of `kind`, on the member session it
   * runs on (see `MultipartOperation.authorise`: a refused PIN leaves it open).
   */
  async authorise(kind: OperationKind, pin: string): Promise<void> {
    this.#checked();
    const entry = this.#open.get(kind);
    if (entry === undefined || this.#ending) throw sessionError('CKR_OPERATION_NOT_INITIALIZED', 'C_Login');
    await (entry instanceof MultipartOperation ? entry : await entry).authorise(pin);
  }

  /** The single-part call on the open operation of `kind` (its Init ran, with nothing fed): ends it. */
  async once(kind: OperationKind, data: Uint8Array, signature?: Uint8Array): Promise<Buffer | boolean> {
    const d = bytes(data, 'data');
    const s = kind === 'verify' ? bytes(signature, 'signature') : undefined;
    try {
      return await this.#run(kind, 'Final', (op) => op.once(d, s));
    } finally {
      this.#forget(kind);
    }
  }

  /** Ends every open operation on its member (closing its session there). */
  async endAll(): Promise<void> {
    this.#ending = true;
    const open = [...this.#open.values()];
    this.#open.clear();
    await Promise.allSettled(open.map(async (o) => (await o).end()));
    this.#ending = false;
  }

  async #run<T>(kind: OperationKind, step: 'Update' | 'Final' | 'Key', work: (op: MultipartOperation) => Promise<T>): Promise<T> {
    this.#checked();
    const entry = this.#open.get(kind);
    if (entry === undefined || this.#ending) throw sessionError('CKR_OPERATION_NOT_INITIALIZED', functionName(kind, step));
    const op = entry instanceof MultipartOperation ? entry : await entry;
    try {
      return await work(op);
    } catch (error) {
      // PKCS#11: an error in a step ends the operation (the operation closed its session).
      this.#forget(kind, op);
      throw error;
    }
  }

  #forget(kind: OperationKind, op?: MultipartOperation): void {
    const entry = this.#open.get(kind);
    if (entry !== undefined && (op === undefined || entry === op)) this.#open.delete(kind);
  }

  #checked(): SlotContext {
    const context = this.#context();
    if (context.closed.aborted) throw new ClosedError('group');
    return context;
  }

  #object(handle: ObjectHandle): VirtualObject {
    const object = typeof handle === 'number' ? this.#context().catalog.get(handle) : undefined;
    if (object === undefined) throw new InvalidHandleError(handle);
    return object;
  }

  /** The group's settings, or defaults for a context that has none (a test's). */
  #settingsOf(context: SlotContext): MultipartSettings {
    return (this.#settings ??= context.multipart ?? {
      mode: 'primary',
      operationBytes: DEFAULT_OPERATION_REPLAY_BYTES,
      budget: new ReplayBudget(DEFAULT_GROUP_REPLAY_BYTES),
      failover: new FailoverPolicy(),
      scheduler: context.router.scheduler,
    });
  }
}

/** The group's settings of multi-part operations, from its configuration. */
export function multipartSettings(
  config: { readonly multipart: MultipartSettings['mode']; readonly multipartReplay: { readonly operationBytes: number; readonly groupBytes: number } },
  failover: FailoverPolicy,
  router: { readonly scheduler: MultipartSettings['scheduler'] },
): MultipartSettings {
  return { mode: config.multipart, operationBytes: config.multipartReplay.operationBytes, budget: new ReplayBudget(config.multipartReplay.groupBytes), failover, scheduler: router.scheduler };
}
