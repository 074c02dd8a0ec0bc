/**
 * The pkcs11js functions over an open group, in the facade worker: sessions, login state,
 * find iterations and operations kept by PKCS#11's rules, handles as numbers. Each
 * function takes the calling `PKCS11` object (`owner`) first; C_CloseAllSessions and
 * C_Finalize end that owner's sessions only, as several PKCS11 objects share one group.
 */
import type { Mechanism, Template } from 'pkcs11js';
import type { HaGroup } from '../group/ha-group.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { toMechanism } from '../pkcs11/mechanism-table.js';
import type { RawTemplate } from '../pkcs11/template-codec.js';
import type { VirtualSession } from '../slot/virtual-session.js';
import { AttributeCache, ulong } from './attribute-cache.js';
import { FacadeError } from './facade-error.js';

/** Session states (CKS_*; pkcs11js has no constants for them). */
const CKS = { RO_PUBLIC: 0, RO_USER: 1, RW_PUBLIC: 2, RW_USER: 3, RW_SO: 4 } as const;
import { SessionOperations, type OperationKind } from './session-operations.js';
import { tokenInfo, tokenSerial, VIRTUAL_SLOT_ID } from './slot-info.js';

interface FacadeSession {
  readonly owner: number;
  readonly session: VirtualSession;
  readonly rw: boolean;
  readonly ops: SessionOperations;
  /** Session objects made in this session: they go when it closes. */
  readonly objects: Set<number>;
  find: { handles: number[]; next: number } | undefined;
}

/** An engine function: the owner, then the pkcs11js arguments with handles as numbers. */
type EngineFunction = (owner: number, ...args: never[]) => unknown;

/** The facade's state over one open group. */
export class FacadeEngine {
  readonly #group: HaGroup;
  readonly #label: string;
  readonly #sessions = new Map<number, FacadeSession>();
  /** Object handles given out: a handle never given out is invalid without a round trip. */
  readonly #known = new Set<number>();
  /** Attributes fixed at creation, answered without a round trip (attribute-cache.ts). */
  readonly #attributes = new AttributeCache();
  #nextSession = 1;
  /** Who is logged in (group-wide, as PKCS#11 login is per application). */
  #user: number | undefined;
  readonly #functions: Record<string, EngineFunction>;
  /** Failures of pipelined C_*Init calls, by `session:kind`: thrown by the next call of that operation. */
  readonly #deferred = new Map<string, unknown>();

  constructor(group: HaGroup, label: string) {
    this.#group = group;
    this.#label = label;
    this.#functions = this.#table();
  }

  /** Runs one function by its pkcs11js name. */
  async call(owner: number, fn: string, args: readonly unknown[]): Promise<unknown> {
    const f = this.#functions[fn];
    if (f === undefined) throw new FacadeError('CKR_FUNCTION_NOT_SUPPORTED');
    return (f as (owner: number, ...a: unknown[]) => unknown)(owner, ...args);
  }

  /**
   * Keeps the failure of a pipelined C_*Init (its caller did not wait for it): the next
   * call of that operation on that session throws it, as the Init would have.
   */
  deferFailure(fn: string, args: readonly unknown[], error: unknown): void {
    const kind = /^C_(\w+)Init$/.exec(fn)?.[1]?.toLowerCase();
    if (kind !== undefined && typeof args[0] === 'number') this.#deferred.set(`${args[0]}:${kind}`, error);
  }

  /** Throws the kept failure of the Init that prepared this call, if any (once). */
  #prepared(s: number, kind: OperationKind): void {
    if (this.#deferred.size === 0) return;
    const key = `${s}:${kind}`;
    const error = this.#deferred.get(key);
    if (error === undefined) return;
    this.#deferred.delete(key);
    throw error;
  }

  /** Closes the sessions of `owner` (its C_Finalize). */
  async closeOwner(owner: number): Promise<void> {
    await this.#closeAll(owner);
  }

  #table(): Record<string, EngineFunction> {
    const ops = (kind: OperationKind) => ({
      init: async (_o: number, s: number, mechanism: Mechanism, key?: number): Promise<void> => {
        if (this.#deferred.size > 0) this.#deferred.delete(`${s}:${kind}`);
        const session = this.#session(s);
        const m = toMechanism(mechanism);
        if (key !== undefined && !this.#known.has(key)) throw new FacadeError('CKR_KEY_HANDLE_INVALID');
        session.ops.init(kind, m, key);
      },
      single: async (_o: number, s: number, data: Buffer, extra: Buffer | undefined, room: number | undefined) => (this.#prepared(s, kind), this.#session(s).ops.single(kind, data, extra, room)),
      update: async (_o: number, s: number, data: Buffer) => (this.#prepared(s, kind), this.#session(s).ops.update(kind, data)),
      final: async (_o: number, s: number, signature?: Buffer) => (this.#prepared(s, kind), this.#session(s).ops.final(kind, signature)),
    });
    const table: Record<string, EngineFunction> = {
      C_GetTokenInfo: (_o: number) => this.#tokenInfo(),
      // Answered from the slot's cache (asked of the members again when the serving members change).
      C_GetMechanismList: async (_o: number) => [...(await this.#group.slot.mechanisms()).keys()],
      C_GetMechanismInfo: async (_o: number, type: number) => {
        const m = (await this.#group.slot.mechanisms()).get(type);
        if (m === undefined) throw new FacadeError('CKR_MECHANISM_INVALID');
        return { minKeySize: m.minKeySize, maxKeySize: m.maxKeySize, flags: m.flags };
      },
      C_OpenSession: (o: number, flags: number) => this.#openSession(o, flags),
      C_CloseSession: (_o: number, s: number) => this.#closeSession(s),
      C_CloseAllSessions: (o: number) => this.#closeAll(o),
      C_GetSessionInfo: (_o: number, s: number) => this.#sessionInfo(s),
      C_Login: (_o: number, s: number, userType: number, pin: string) => this.#login(s, userType, pin),
      C_Logout: (_o: number, s: number) => this.#logout(s),
      C_InitPIN: async (_o: number, s: number, pin: string | undefined) => {
        const session = this.#session(s);
        if (this.#user !== pkcs11js.CKU_SO) throw new FacadeError('CKR_USER_NOT_LOGGED_IN');
        if (!session.rw) throw new FacadeError('CKR_SESSION_READ_ONLY');
        // No protected authentication path: the PIN must be given.
        if (pin === undefined || pin.length === 0) throw new FacadeError('CKR_ARGUMENTS_BAD');
        await session.session.initPin(pin);
      },
      C_SetPIN: async (_o: number, s: number, oldPin: string, newPin: string) => {
        const session = this.#session(s);
        if (!session.rw) throw new FacadeError('CKR_SESSION_READ_ONLY');
        if (newPin.length === 0) throw new FacadeError('CKR_PIN_LEN_RANGE');
        await session.session.setPin(oldPin, newPin);
      },
      C_FindObjectsInit: async (_o: number, s: number, template: Template) => {
        const session = this.#session(s);
        if (session.find !== undefined) throw new FacadeError('CKR_OPERATION_ACTIVE');
        const handles = await session.session.findObjects(template as RawTemplate);
        for (const h of handles) this.#known.add(h);
        session.find = { handles, next: 0 };
      },
      C_FindObjects: (_o: number, s: number, max: number) => {
        const find = this.#session(s).find;
        if (find === undefined) throw new FacadeError('CKR_OPERATION_NOT_INITIALIZED');
        const out = find.handles.slice(find.next, find.next + max);
        find.next += out.length;
        return out;
      },
      C_FindObjectsFinal: (_o: number, s: number) => {
        const session = this.#session(s);
        if (session.find === undefined) throw new FacadeError('CKR_OPERATION_NOT_INITIALIZED');
        session.find = undefined;
      },
      C_GetAttributeValue: (_o: number, s: number, object: number, template: Template) => this.#getAttributes(s, object, template),
      C_SetAttributeValue: async (_o: number, s: number, object: number, template: Template) => {
        await this.#session(s).session.setAttributes(this.#object(object), template as RawTemplate);
        // Whatever a module lets change, the next read asks again.
        this.#attributes.forget(object);
      },
      C_CreateObject: async (_o: number, s: number, template: Template) => {
        const handle = this.#made(await this.#session(s).session.createObject(template as RawTemplate), s, template);
        const value = template.find((a) => a.type === pkcs11js.CKA_VALUE)?.value;
        if (Buffer.isBuffer(value) && template.some((a) => a.type === pkcs11js.CKA_CLASS && a.value === pkcs11js.CKO_SECRET_KEY)) this.#attributes.set(handle, pkcs11js.CKA_VALUE_LEN, ulong(value.length));
        return handle;
      },
      C_CopyObject: async (_o: number, s: number, object: number, template: Template) =>
        this.#made(await this.#session(s).session.copyObject(this.#object(object), template as RawTemplate), s, template),
      C_DestroyObject: async (_o: number, s: number, object: number) => {
        await this.#session(s).session.destroyObject(this.#object(object));
        this.#known.delete(object);
        this.#attributes.forget(object);
      },
      C_GenerateKey: async (_o: number, s: number, mechanism: Mechanism, template: Template) => {
        const handle = this.#made(await this.#session(s).session.generateKey(mechanism, template as RawTemplate), s, template);
        const length = template.find((a) => a.type === pkcs11js.CKA_VALUE_LEN)?.value;
        if (typeof length === 'number') this.#attributes.set(handle, pkcs11js.CKA_VALUE_LEN, ulong(length));
        return handle;
      },
      C_GenerateKeyPair: async (_o: number, s: number, mechanism: Mechanism, pub: Template, priv: Template) => {
        const pair = await this.#session(s).session.generateKeyPair(mechanism, pub as RawTemplate, priv as RawTemplate);
        return { publicKey: this.#made(pair.publicKey, s, pub), privateKey: this.#made(pair.privateKey, s, priv) };
      },
      C_WrapKey: async (_o: number, s: number, mechanism: Mechanism, wrappingKey: number, key: number) =>
        this.#session(s).session.wrapKey(mechanism, this.#key(wrappingKey), this.#key(key)),
      C_UnwrapKey: async (_o: number, s: number, mechanism: Mechanism, unwrappingKey: number, wrapped: Buffer, template: Template) =>
        this.#made(await this.#session(s).session.unwrapKey(mechanism, this.#key(unwrappingKey), wrapped, template as RawTemplate), s, template),
      C_DeriveKey: async (_o: number, s: number, mechanism: Mechanism, baseKey: number, template: Template) =>
        this.#made(await this.#session(s).session.deriveKey(mechanism, this.#key(baseKey), template as RawTemplate), s, template),
      C_GenerateRandom: async (_o: number, s: number, length: number) => (length === 0 ? Buffer.alloc(0) : this.#session(s).session.generateRandom(length)),
      // Every serving member takes the seed: the next random bytes may come from any of them.
      C_SeedRandom: async (_o: number, s: number, seed: Buffer) => {
        this.#session(s);
        if (seed.length === 0) throw new FacadeError('CKR_ARGUMENTS_BAD');
        await this.#group.slot.seedRandom(seed);
      },
      C_DigestKey: async (_o: number, s: number, key: number) => (this.#prepared(s, 'digest'), this.#session(s).ops.digestKey(this.#key(key))),
      // The object lives on several members, each storing it its own way: no one size holds
      // for the group. CK_UNAVAILABLE_INFORMATION, as pkcs11js reads it (what SoftHSM answers too).
      C_GetObjectSize: (_o: number, s: number, object: number) => (this.#session(s), this.#object(object), 0xffff_ffff),
      // Recovery needs every member to offer it under one key; SoftHSM (the members here) does not.
      C_SignRecoverInit: (_o: number, s: number) => this.#unsupported(s),
      C_SignRecover: (_o: number, s: number) => this.#unsupported(s),
      C_VerifyRecoverInit: (_o: number, s: number) => this.#unsupported(s),
      C_VerifyRecover: (_o: number, s: number) => this.#unsupported(s),
      // The dual functions: each operation runs on its own member session, so the pair works on any module.
      C_DigestEncryptUpdate: (_o: number, s: number, data: Buffer) => (this.#prepared(s, 'digest'), this.#prepared(s, 'encrypt'), this.#session(s).ops.intoBoth('digest', data)),
      C_SignEncryptUpdate: (_o: number, s: number, data: Buffer) => (this.#prepared(s, 'sign'), this.#prepared(s, 'encrypt'), this.#session(s).ops.intoBoth('sign', data)),
      C_DecryptDigestUpdate: (_o: number, s: number, data: Buffer) => (this.#prepared(s, 'decrypt'), this.#prepared(s, 'digest'), this.#session(s).ops.decryptInto('digest', data)),
      C_DecryptVerifyUpdate: (_o: number, s: number, data: Buffer) => (this.#prepared(s, 'decrypt'), this.#prepared(s, 'verify'), this.#session(s).ops.decryptInto('verify', data)),
    };
    for (const [kind, name] of [
      ['encrypt', 'Encrypt'],
      ['decrypt', 'Decrypt'],
      ['sign', 'Sign'],
      ['verify', 'Verify'],
      ['digest', 'Digest'],
    ] as const) {
      const o = ops(kind);
      table[`C_${name}Init`] = o.init;
      table[`C_${name}`] = o.single;
      table[`C_${name}Update`] = o.update;
      table[`C_${name}Final`] = o.final;
    }
    return table;
  }

  /** A function no member offers: the session is checked first, as SoftHSM does. */
  #unsupported(s: number): never {
    this.#session(s);
    throw new FacadeError('CKR_FUNCTION_NOT_SUPPORTED');
  }

  #session(handle: number): FacadeSession {
    const s = this.#sessions.get(handle);
    if (s === undefined || !s.session.open) throw new FacadeError('CKR_SESSION_HANDLE_INVALID');
    return s;
  }

  #object(handle: number): number {
    if (!this.#known.has(handle)) throw new FacadeError('CKR_OBJECT_HANDLE_INVALID');
    return handle;
  }

  #key(handle: number): number {
    if (!this.#known.has(handle)) throw new FacadeError('CKR_KEY_HANDLE_INVALID');
    return handle;
  }

  /** A handle given out; a session object (no CKA_TOKEN=true in its template) is tied to its session `s`. */
  #made(handle: number, s?: number, template?: Template): number {
    this.#known.add(handle);
    if (s !== undefined && template !== undefined && !template.some((a) => a.type === pkcs11js.CKA_TOKEN && a.value === true)) this.#sessions.get(s)?.objects.add(handle);
    return handle;
  }

  #openSession(owner: number, flags: number): number {
    if ((flags & pkcs11js.CKF_SERIAL_SESSION) === 0) throw new FacadeError('CKR_SESSION_PARALLEL_NOT_SUPPORTED');
    const rw = (flags & pkcs11js.CKF_RW_SESSION) !== 0;
    if (!rw && this.#user === pkcs11js.CKU_SO) throw new FacadeError('CKR_SESSION_READ_WRITE_SO_EXISTS');
    const session = this.#group.slot.openSession();
    const handle = this.#nextSession++;
    this.#sessions.set(handle, { owner, session, rw, ops: new SessionOperations(session), objects: new Set(), find: undefined });
    return handle;
  }

  async #closeSession(handle: number): Promise<void> {
    const s = this.#session(handle);
    // PKCS#11: closing the application's last session logs it out.
    if (this.#sessions.size === 1 && this.#user !== undefined) await this.#logoutQuietly(s.session);
    this.#sessions.delete(handle);
    for (const kind of ['encrypt', 'decrypt', 'sign', 'verify', 'digest'] as const) this.#deferred.delete(`${handle}:${kind}`);
    s.ops.clear();
    // Its session objects go with it (copies without CKA_TOKEN in their template are counted
    // here too; a token copy of that kind stays reachable through the group).
    for (const object of s.objects) {
      this.#known.delete(object);
      this.#attributes.forget(object);
    }
    await s.session.close();
  }

  async #closeAll(owner: number): Promise<void> {
    for (const [handle, s] of [...this.#sessions]) if (s.owner === owner) await this.#closeSession(handle);
  }

  async #logoutQuietly(session: VirtualSession): Promise<void> {
    this.#user = undefined;
    await session.logout().catch(() => undefined);
  }

  #sessionInfo(handle: number): { slotID: number; state: number; flags: number; deviceError: number } {
    const s = this.#session(handle);
    const state =
      this.#user === pkcs11js.CKU_SO
        ? CKS.RW_SO
        : this.#user === pkcs11js.CKU_USER
          ? s.rw
            ? CKS.RW_USER
            : CKS.RO_USER
          : s.rw
            ? CKS.RW_PUBLIC
            : CKS.RO_PUBLIC;
    return { slotID: VIRTUAL_SLOT_ID, state, flags: pkcs11js.CKF_SERIAL_SESSION | (s.rw ? pkcs11js.CKF_RW_SESSION : 0), deviceError: 0 };
  }

  async #login(handle: number, userType: number, pin: string): Promise<void> {
    const s = this.#session(handle);
    if (userType === pkcs11js.CKU_CONTEXT_SPECIFIC) {
      // Authorises the session's open operation on the member that runs it (session-operations.ts);
      // a pipelined Init that failed says so first.
      for (const kind of ['encrypt', 'decrypt', 'sign', 'verify'] as const) this.#prepared(handle, kind);
      if (typeof pin !== 'string' || pin.length === 0) throw new FacadeError('CKR_PIN_INCORRECT');
      return s.ops.contextLogin(pin);
    }
    if (userType !== pkcs11js.CKU_USER && userType !== pkcs11js.CKU_SO) throw new FacadeError('CKR_USER_TYPE_INVALID');
    if (this.#user !== undefined) throw new FacadeError(this.#user === userType ? 'CKR_USER_ALREADY_LOGGED_IN' : 'CKR_USER_ANOTHER_ALREADY_LOGGED_IN');
    if (userType === pkcs11js.CKU_SO && [...this.#sessions.values()].some((x) => !x.rw)) throw new FacadeError('CKR_SESSION_READ_ONLY_EXISTS');
    if (typeof pin !== 'string' || pin.length === 0) throw new FacadeError('CKR_PIN_INCORRECT');
    await s.session.login(pin, userType === pkcs11js.CKU_SO ? 'so' : 'user');
    this.#user = userType;
  }

  async #logout(handle: number): Promise<void> {
    const s = this.#session(handle);
    if (this.#user === undefined) throw new FacadeError('CKR_USER_NOT_LOGGED_IN');
    for (const x of this.#sessions.values()) x.ops.clear();
    this.#user = undefined;
    await s.session.logout();
  }

  async #getAttributes(handle: number, object: number, template: Template): Promise<{ type: number; value: Buffer }[]> {
    const s = this.#session(handle);
    const types = template.map((a) => a.type);
    const cached = this.#attributes.get(this.#object(object), types);
    if (cached !== undefined) return cached;
    const read = await s.session.getAttributeValues(object, types);
    // pkcs11js fails the whole call when one attribute cannot be read.
    if (read.some((a) => a.value === undefined)) throw new FacadeError('CKR_ATTRIBUTE_TYPE_INVALID');
    return this.#attributes.merge(object, read as { type: number; value: Buffer }[]);
  }

  async #tokenInfo(): Promise<ReturnType<typeof tokenInfo>> {
    const limits = await this.#group.slot.tokenLimits();
    const status = this.#group.status();
    const sessions = this.#sessions.size;
    const rw = [...this.#sessions.values()].filter((s) => s.rw).length;
    return tokenInfo({ label: this.#label, serial: tokenSerial(status.domain, status.members.map((m) => m.name)), sessions, rwSessions: rw, limits });
  }
}
