/**
 * A session on the virtual slot. The application calls ordinary PKCS#11 operations with
 * virtual object handles; each stateless operation is load-balanced over the members
 * that hold its key, and moved to another member if the chosen one fails under it.
 */
import { InvalidArgumentError, InvalidHandleError } from '../errors/ha-error.js';
import type { ObjectHandle, VirtualObject } from '../catalog/catalog.js';
import type { ReadAttribute } from '../pkcs11/commands.js';
import { attributeType } from '../pkcs11/attribute-table.js';
import { toMechanism, type MechanismInput } from '../pkcs11/mechanism-table.js';
import { fromRawAttributes, toRawTemplate, type FriendlyAttributes, type FriendlyTemplate, type TemplateInput } from '../pkcs11/template-codec.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { describeType, isUlong } from '../pkcs11/argument-checks.js';
import type { SlotContext } from './slot-context.js';
import { MultipartSession } from './multipart-session.js';
import { ClosedError } from '../errors/ha-error.js';
import type { Member } from '../member/member.js';
import type { Handle } from '../pkcs11/commands.js';
import type { SessionScope } from '../replication/key-manager.js';
import { BackingSessions } from './session-objects.js';
import { rememberValueLen, withValueLen } from './value-len.js';
import { classifyError } from '../errors/classification.js';
import { placeReplica, readReplicaSource } from '../replication/replica-copy.js';
import { identityFrom } from '../catalog/object-identity.js';
import type { SessionRestoreOptions, SessionRestoreResult } from '../recovery/open-sessions.js';

/** Who logs in: the normal user, the security officer, or a raw CKU_* number. */
export type UserType = 'user' | 'so' | number;

function bytes(value: unknown, what: string): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new InvalidArgumentError(`${what} must be a Buffer or Uint8Array, got ${value === null ? 'null' : typeof value}`);
}

function userTypeNumber(userType: UserType): number {
  if (userType === 'user') return pkcs11js.CKU_USER;
  if (userType === 'so') return pkcs11js.CKU_SO;
  if (typeof userType === 'number' && Number.isInteger(userType) && userType >= 0) return userType;
  throw new InvalidArgumentError(`userType must be 'user', 'so' or a CKU_* number, got ${typeof userType === 'string' ? JSON.stringify(userType) : describeType(userType)}`);
}

/**
 * A session on the virtual slot. Open one with `group.slot.openSession()`.
 *
 * @example
 * const session = group.slot.openSession();
 * await session.login(pin);
 * const [key] = await session.findObjects({ label: 'orders-key' });
 * const signature = await session.sign('SHA256_HMAC', key, data);
 */
export class VirtualSession {
  readonly #context: SlotContext;
  #closed = false;
  /** Unregisters this session from recovery's list of open sessions. */
  readonly #unregister: () => void;
  /** This session's own sessions on each member, several per member: its session objects live there. */
  readonly #backing = new BackingSessions();
  /** Session objects made through this session. */
  readonly #objects = new Set<VirtualObject>();
  /** Key management calls under way: `close` waits for them before it cleans up. */
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Open multi-part operations, each pinned to a member (src/slot/multipart-session.ts). */
  readonly #multipart = new MultipartSession(() => (this.#check(), this.#context), this);
  readonly #scope: SessionScope = {
    // Each call holds one backing session alone (two calls at once on one crash SoftHSM).
    exec: (member, build) => this.#backing.exec(member, build),
    own: (object) => {
      this.#objects.add(object);
      this.#backing.own(object);
    },
  };

  /** @internal Sessions are opened with `VirtualSlot.openSession`. */
  constructor(context: SlotContext) {
    this.#context = context;
    this.#unregister = context.openSessions.add({ restore: (member, options) => this.#restoreMember(member, options) });
  }

  /** False once closed. */
  get open(): boolean {
    return !this.#closed;
  }

  /**
   * Logs in on every member. The PIN is tried on ONE member first; only when that member
   * accepts it is it used on the others, so a typo never counts against every token.
   * Login state is shared by all sessions of the group, as in PKCS#11.
   *
   * @throws {@link Pkcs11Error} `CKR_PIN_INCORRECT` (and other CKR_PIN_*) from the first member
   */
  async login(pin: string, userType: UserType = 'user'): Promise<void> {
    this.#check();
    if (typeof pin !== 'string' || pin.length === 0) throw new InvalidArgumentError('pin must be a non-empty string');
    // A refused PIN changes the tokens' PIN flags (CKF_USER_PIN_COUNT_LOW, ...).
    await this.#context.login.login(userTypeNumber(userType), pin).catch((error: unknown) => {
      this.#context.capabilities?.forget();
      throw error;
    });
    // Debts read back from the journal (the application restarted while a member owed
    // something) are settled now that private objects can be made. Before login returns:
    // a search running beside the repair could link a copy the repair is deleting.
    await this.#context.recovery.repairOwing();
  }

  /** Logs out of every member. */
  async logout(): Promise<void> {
    this.#check();
    await this.#multipart.endAll();
    await this.#context.login.logout();
  }

  /**
   * Changes the PIN (C_SetPIN) on every member or on none: the user's, or the security
   * officer's while the SO is logged in. Refused while a member is down; a member failing
   * during the change has it rolled back on the others.
   *
   * @throws {@link MemberUnreachableError} a member is down or failed during the change (the PIN is unchanged)
   * @throws {@link Pkcs11Error} `CKR_PIN_INCORRECT` for a wrong old PIN (tried on one member only)
   */
  async setPin(oldPin: string, newPin: string): Promise<void> {
    this.#check();
    if (typeof oldPin !== 'string' || typeof newPin !== 'string' || newPin.length === 0) throw new InvalidArgumentError('oldPin and newPin must be strings, newPin non-empty');
    await this.#context.login.setPin(oldPin, newPin).finally(() => this.#context.capabilities?.forget());
  }

  /**
   * Sets the user PIN (C_InitPIN) on every member or on none; the security officer must
   * be logged in.
   *
   * @throws {@link MemberUnreachableError} a member is down or failed during the change
   * @throws {@link Pkcs11Error} `CKR_USER_NOT_LOGGED_IN` unless the SO is logged in
   */
  async initPin(pin: string): Promise<void> {
    this.#check();
    if (typeof pin !== 'string' || pin.length === 0) throw new InvalidArgumentError('pin must be a non-empty string');
    await this.#context.login.initPin(pin).finally(() => this.#context.capabilities?.forget());
  }

  /** Encrypts `data` in one part (C_EncryptInit + C_Encrypt) on the least busy member holding `key`. */
  async encrypt(mechanism: MechanismInput, key: ObjectHandle, data: Uint8Array): Promise<Buffer> {
    const [m, object, d] = this.#prepare(mechanism, key, data);
    return this.#context.router.run<'encrypt'>(object, (session, h) => ({ op: 'encrypt', session, mechanism: m, key: h, data: d }));
  }

  /** Decrypts `data` in one part on the least busy member holding `key`. */
  async decrypt(mechanism: MechanismInput, key: ObjectHandle, data: Uint8Array): Promise<Buffer> {
    const [m, object, d] = this.#prepare(mechanism, key, data);
    return this.#context.router.run<'decrypt'>(object, (session, h) => ({ op: 'decrypt', session, mechanism: m, key: h, data: d }));
  }

  /** Signs (or MACs) `data` in one part on the least busy member holding `key`. */
  async sign(mechanism: MechanismInput, key: ObjectHandle, data: Uint8Array): Promise<Buffer> {
    const [m, object, d] = this.#prepare(mechanism, key, data);
    return this.#context.router.run<'sign'>(object, (session, h) => ({ op: 'sign', session, mechanism: m, key: h, data: d }));
  }

  /** Verifies a signature or MAC. Resolves false for a wrong signature; rejects for anything else. */
  async verify(mechanism: MechanismInput, key: ObjectHandle, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
    const [m, object, d] = this.#prepare(mechanism, key, data);
    const s = bytes(signature, 'signature');
    return this.#context.router.run<'verify'>(object, (session, h) => ({ op: 'verify', session, mechanism: m, key: h, data: d, signature: s }));
  }

  /** Digests `data` in one part on the least busy member. */
  async digest(mechanism: MechanismInput, data: Uint8Array): Promise<Buffer> {
    this.#check();
    const m = toMechanism(mechanism);
    const d = bytes(data, 'data');
    return this.#context.router.run<'digest'>(undefined, (session) => ({ op: 'digest', session, mechanism: m, data: d }));
  }

  /** C_EncryptInit: starts a multi-part encryption with `key`, pinned to one member (README, "Multi-part operations"). */
  async encryptInit(mechanism: MechanismInput, key: ObjectHandle): Promise<void> {
    return this.#multipart.init('encrypt', mechanism, key);
  }
  /**
   * C_EncryptUpdate: the next part; resolves to the output it gave (possibly empty).
   * @param out where the output goes, as in pkcs11js: the result is then a view of it, and
   *   no buffer is made per part (one that is too small gets a buffer of its own instead)
   */
  encryptUpdate(data: Uint8Array, out?: Uint8Array): Promise<Buffer> {
    // An encrypt or decrypt step always gives a buffer (an empty one for an empty part).
    return this.#multipart.update('encrypt', data, out) as Promise<Buffer>;
  }
  /** C_EncryptFinal: ends the operation with its last output, whole. */
  async encryptFinal(): Promise<Buffer> {
    return this.#multipart.final('encrypt') as Promise<Buffer>;
  }
  /** C_DecryptInit: starts a multi-part decryption with `key`, pinned to one member (README, "Multi-part operations"). */
  async decryptInit(mechanism: MechanismInput, key: ObjectHandle): Promise<void> {
    return this.#multipart.init('decrypt', mechanism, key);
  }
  /**
   * C_DecryptUpdate: the next part; resolves to the output it gave (possibly empty).
   * @param out where the output goes, as in pkcs11js: the result is then a view of it, and
   *   no buffer is made per part (one that is too small gets a buffer of its own instead)
   */
  decryptUpdate(data: Uint8Array, out?: Uint8Array): Promise<Buffer> {
    // An encrypt or decrypt step always gives a buffer (an empty one for an empty part).
    return this.#multipart.update('decrypt', data, out) as Promise<Buffer>;
  }
  /** C_DecryptFinal: ends the operation with its last output, whole. */
  async decryptFinal(): Promise<Buffer> {
    return this.#multipart.final('decrypt') as Promise<Buffer>;
  }
  /** C_SignInit: starts a multi-part signature or MAC with `key`, pinned to one member (README, "Multi-part operations"). */
  async signInit(mechanism: MechanismInput, key: ObjectHandle): Promise<void> {
    return this.#multipart.init('sign', mechanism, key);
  }
  /** C_SignUpdate: the next part of the data. */
  async signUpdate(data: Uint8Array): Promise<void> {
    await this.#multipart.update('sign', data);
  }
  /** C_SignFinal: ends the operation with the signature or MAC, whole. */
  async signFinal(): Promise<Buffer> {
    return this.#multipart.final('sign') as Promise<Buffer>;
  }
  /** C_VerifyInit: starts a multi-part verification with `key`, pinned to one member (README, "Multi-part operations"). */
  async verifyInit(mechanism: MechanismInput, key: ObjectHandle): Promise<void> {
    return this.#multipart.init('verify', mechanism, key);
  }
  /** C_VerifyUpdate: the next part of the data. */
  async verifyUpdate(data: Uint8Array): Promise<void> {
    await this.#multipart.update('verify', data);
  }
  /** C_VerifyFinal: ends the operation; resolves false for a wrong signature. */
  async verifyFinal(signature: Uint8Array): Promise<boolean> {
    return this.#multipart.final('verify', signature) as Promise<boolean>;
  }
  /** C_DigestInit: starts a multi-part digest, pinned to one member. */
  async digestInit(mechanism: MechanismInput): Promise<void> {
    return this.#multipart.init('digest', mechanism);
  }
  /** C_DigestUpdate: the next part of the data. */
  async digestUpdate(data: Uint8Array): Promise<void> {
    await this.#multipart.update('digest', data);
  }
  /** C_DigestKey: the value of a secret key as the next part of the open digest. */
  async digestKey(key: ObjectHandle): Promise<void> {
    return this.#multipart.digestKey(key);
  }
  /** C_DigestFinal: ends the digest with its value. */
  async digestFinal(): Promise<Buffer> {
    return this.#multipart.final('digest') as Promise<Buffer>;
  }

  /** Random bytes from the least busy member's generator. */
  async generateRandom(length: number): Promise<Buffer> {
    this.#check();
    if (!Number.isInteger(length) || length < 1 || length > 1 << 20) {
      throw new InvalidArgumentError(`length must be an integer from 1 to ${1 << 20}, got ${describeType(length)}`);
    }
    return this.#context.router.run<'generateRandom'>(undefined, (session) => ({ op: 'generateRandom', session, length }));
  }

  /**
   * Finds objects matching a template on every serving member and returns their virtual
   * handles: the same object on several members is one handle. Cache what you find:
   * a search scans every object on every member.
   */
  async findObjects(template: TemplateInput = {}): Promise<ObjectHandle[]> {
    this.#check();
    return this.#context.discovery.findObjects(toRawTemplate(template));
  }

  /**
   * Reads attributes by friendly name, decoded (booleans, numbers, strings, Buffers).
   * Attributes the object lacks or hides (sensitive values) come back undefined.
   */
  async getAttributes(key: ObjectHandle, names: readonly (keyof FriendlyTemplate)[]): Promise<FriendlyAttributes> {
    this.#check();
    if (!Array.isArray(names)) throw new InvalidArgumentError(`names must be an array of attribute names, e.g. ['label'], got ${describeType(names)}`);
    const types = Array.from(names, (n) => attributeType(n)); // a hole is a name too (refused), never skipped
    const read = await this.getAttributeValues(key, types);
    return fromRawAttributes(read.filter((a): a is { type: number; value: Buffer } => a.value !== undefined));
  }

  /** Reads raw attribute values by CKA_* number; missing or hidden ones have `value: undefined`. */
  async getAttributeValues(key: ObjectHandle, types: readonly number[]): Promise<ReadAttribute[]> {
    this.#check();
    if (!Array.isArray(types) || !Array.from(types).every((t) => isUlong(t))) {
      throw new InvalidArgumentError(`types must be an array of CKA_* numbers, got ${Array.isArray(types) ? `an array holding ${describeType(types.find((t) => !isUlong(t)))}` : describeType(types)}`);
    }
    const object = this.#object(key);
    const read = await this.#context.router.run<'getAttributes'>(object, (session, h) => ({ op: 'getAttributes', session, object: h, types }));
    return withValueLen(object, read);
  }

  /**
   * Generates a secret key on the primary and replicates it to every member before
   * returning. Secret keys become extractable only under the trusted domain key (see the
   * README, "Replication and CKA_EXTRACTABLE").
   *
   * @example
   * const key = await session.generateKey('AES_KEY_GEN', { label: 'orders', valueLen: 32, token: true, encrypt: true, decrypt: true });
   */
  async generateKey(mechanism: MechanismInput, template: TemplateInput): Promise<ObjectHandle> {
    this.#check();
    const raw = toRawTemplate(template);
    return rememberValueLen(await this.#track(this.#context.keys.generateKey(this.#scope, toMechanism(mechanism), raw)), raw).handle;
  }

  /** Generates a key pair on the primary and replicates both halves to every member. */
  async generateKeyPair(mechanism: MechanismInput, publicTemplate: TemplateInput, privateTemplate: TemplateInput): Promise<{ publicKey: ObjectHandle; privateKey: ObjectHandle }> {
    this.#check();
    const pair = await this.#track(this.#context.keys.generateKeyPair(this.#scope, toMechanism(mechanism), toRawTemplate(publicTemplate), toRawTemplate(privateTemplate)));
    return { publicKey: pair.publicKey.handle, privateKey: pair.privateKey.handle };
  }

  /**
   * Creates an object on the primary and replicates it. A secret or private key imported
   * this way reaches the other members wrapped under the domain key: its value is sent to
   * the primary only.
   */
  async createObject(template: TemplateInput): Promise<ObjectHandle> {
    this.#check();
    const raw = toRawTemplate(template);
    return rememberValueLen(await this.#track(this.#context.keys.createObject(this.#scope, raw)), raw).handle;
  }

  /** Copies an object (C_CopyObject) and replicates the copy. */
  async copyObject(object: ObjectHandle, template: TemplateInput = {}): Promise<ObjectHandle> {
    this.#check();
    return (await this.#track(this.#context.keys.copyObject(this.#scope, this.#object(object), toRawTemplate(template)))).handle;
  }

  /** Unwraps a key with one of the application's keys, then replicates it. */
  async unwrapKey(mechanism: MechanismInput, unwrappingKey: ObjectHandle, wrapped: Uint8Array, template: TemplateInput): Promise<ObjectHandle> {
    this.#check();
    const raw = toRawTemplate(template);
    return rememberValueLen(await this.#track(this.#context.keys.unwrapKey(this.#scope, toMechanism(mechanism), this.#object(unwrappingKey), bytes(wrapped, 'wrapped'), raw)), raw).handle;
  }

  /** Derives a key and replicates it. */
  async deriveKey(mechanism: MechanismInput, baseKey: ObjectHandle, template: TemplateInput): Promise<ObjectHandle> {
    this.#check();
    const raw = toRawTemplate(template);
    return rememberValueLen(await this.#track(this.#context.keys.deriveKey(this.#scope, toMechanism(mechanism), this.#object(baseKey), raw)), raw).handle;
  }

  /** Destroys an object on every member (members that cannot be reached owe the deletion). */
  async destroyObject(object: ObjectHandle): Promise<void> {
    this.#check();
    const o = this.#object(object);
    await this.#track(this.#context.keys.destroyObject(o));
    this.#objects.delete(o);
    this.#backing.forget(o);
  }

  /** Changes attributes on every member holding the object. */
  async setAttributes(object: ObjectHandle, template: TemplateInput): Promise<void> {
    this.#check();
    await this.#track(this.#context.keys.setAttributes(this.#object(object), toRawTemplate(template)));
  }

  /**
   * Wraps `key` under the application's `wrappingKey` (C_WrapKey) on the least busy member
   * holding both. Keys made through the group only wrap under trusted keys.
   */
  async wrapKey(mechanism: MechanismInput, wrappingKey: ObjectHandle, key: ObjectHandle): Promise<Buffer> {
    this.#check();
    const m = toMechanism(mechanism);
    return this.#context.router.runWith<'wrapKey'>([this.#object(wrappingKey), this.#object(key)], (session, [w, k]) => ({
      op: 'wrapKey',
      session,
      mechanism: m,
      wrappingKey: w!,
      key: k!,
    }));
  }

  /** Closes the session. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unregister();
    await this.#multipart.endAll();
    // New calls are refused from here; calls under way finish (and register what they made).
    await Promise.allSettled([...this.#inFlight]);
    // Closing our backing sessions ends the session objects made in them, on each member.
    await this.#backing.closeAll();
    for (const object of this.#objects) {
      void this.#context.journal.forgetObject(object.handle); // session objects: their debts are never stored
      this.#context.catalog.remove(object);
    }
    this.#objects.clear();
  }

  /**
   * Recovery: gives a reconnected member this session's session objects again.
   * The member's old session is dropped (its handle means nothing on the new transport,
   * and is never sent there: it could name another session); a new one is opened and
   * every live session object is re-created in it from a serving member that holds it
   * (keys wrapped under the domain key there and unwrapped here, public keys and data
   * objects by their attributes). What the member owed for those objects is settled; it
   * is linked as a holder of each. Call it after `resyncMember`, before the member takes
   * traffic.
   *
   * @throws what a member fault on `member` threw (it failed again)
   */
  async #restoreMember(member: Member, options: SessionRestoreOptions): Promise<SessionRestoreResult> {
    if (this.#closed) return { restored: 0, failed: [] };
    return this.#track(this.#restore(member, options));
  }

  async #restore(member: Member, options: SessionRestoreOptions): Promise<SessionRestoreResult> {
    const { journal } = this.#context;
    // Backing sessions are dead if opened on another transport, or if they hold none of our
    // objects any more (a member reconnected on the same transport object): one that
    // holds a live object (a restored one) stays.
    this.#backing.dropStale(member, (o) => this.#objects.has(o) && o.holders.has(member.index));
    const failed: { object: ObjectHandle; reason: string }[] = [];
    const tried = new Set<VirtualObject>();
    let restored = 0;
    // Objects this session makes meanwhile (the member owes them) are taken too.
    for (;;) {
      const object = [...this.#objects].find((o) => !tried.has(o) && !o.holders.has(member.index));
      if (object === undefined || this.#closed) break;
      tried.add(object);
      const reason = await this.#restoreObject(member, object, options);
      if (reason === undefined) {
        restored++;
        for (const d of journal.debts(member.name)) if (d.object.handle === object.handle) await journal.settle(member.name, d);
      } else {
        failed.push({ object: object.handle, reason });
      }
      const left = [...this.#objects].filter((o) => !tried.has(o) && !o.holders.has(member.index)).length;
      options.onProgress?.(tried.size, tried.size + left);
    }
    return { restored, failed };
  }

  /** Re-creates one session object on `member`; returns why not when it cannot. */
  async #restoreObject(member: Member, object: VirtualObject, options: SessionRestoreOptions): Promise<string | undefined> {
    const { catalog } = this.#context;
    const sources = this.#context.membership.all.filter((m) => m !== member && m.serving && object.holders.has(m.index));
    let reason = 'no serving member holds it';
    for (const source of sources) {
      const handle = object.holders.get(source.index);
      if (handle === undefined) continue;
      let copy;
      try {
        copy = await readReplicaSource(source, handle, options.domainKey(source));
      } catch (error) {
        // The source failed or refused: another holder may do.
        reason = (error as Error).message;
        continue;
      }
      let placed: Handle;
      try {
        placed = await placeReplica(this.#scope.exec, member, options.domainKey(member), copy.wrapped, copy.template);
      } catch (error) {
        if (classifyError(error) === 'member') throw error;
        return (error as Error).message;
      }
      if (catalog.get(object.handle) !== object || !this.#objects.has(object)) {
        // Destroyed while it was being copied: the copy must not outlive it.
        await this.#scope.exec<'destroyObject'>(member, (session) => ({ op: 'destroyObject', session, object: placed })).catch(() => undefined);
        return 'destroyed meanwhile';
      }
      // A key made while no other member was there was never read (a provisional identity):
      // its identity is what its copy was read from.
      if (object.identity.provisional) catalog.reindex(object, identityFrom(copy.read, copy.wrapped));
      catalog.link(object, member.index, placed);
      this.#backing.own(object);
      return undefined;
    }
    return reason;
  }

  #track<T>(work: Promise<T>): Promise<T> {
    this.#inFlight.add(work);
    const done = (): void => {
      this.#inFlight.delete(work);
    };
    work.then(done, done);
    return work;
  }

  #check(): void {
    if (this.#closed) throw new ClosedError('session');
    if (this.#context.closed.aborted) throw new ClosedError('group');
  }

  #object(handle: ObjectHandle): VirtualObject {
    const object = typeof handle === 'number' ? this.#context.catalog.get(handle) : undefined;
    if (object === undefined) throw new InvalidHandleError(handle);
    return object;
  }

  #prepare(mechanism: MechanismInput, key: ObjectHandle, data: Uint8Array) {
    this.#check();
    return [toMechanism(mechanism), this.#object(key), bytes(data, 'data')] as const;
  }
}

