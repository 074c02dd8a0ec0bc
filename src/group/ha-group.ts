/**
 * An HA group: several PKCS#11 tokens joined into one virtual slot.
 */
import { EventEmitter } from 'eventemitter3';
import { Catalog, type ObjectHandle, type VirtualObject } from '../catalog/catalog.js';
import { IDENTITY_ATTRIBUTES, identityFrom } from '../catalog/object-identity.js';
import { classifyError } from '../errors/classification.js';
import { ClosedError, HaError, NoMemberAvailableError, Pkcs11Error } from '../errors/ha-error.js';
import { Member } from '../member/member.js';
import type { MemberSnapshot } from '../member/member.js';
import { Secret } from '../member/secret.js';
import type { Handle, ReadAttribute } from '../pkcs11/commands.js';
import { pkcs11js } from '../pkcs11/pkcs11js.js';
import type { Pkcs11Attribute } from '../pkcs11/templates.js';
import { Router } from '../routing/router.js';
import type { SlotContext } from '../slot/slot-context.js';
import { VirtualSlot } from '../slot/virtual-slot.js';
import { InProcessTransport } from '../transport/in-process-transport.js';
import { resolveGroupConfig, type GroupConfig, type ResolvedGroupConfig, type ResolvedMemberConfig } from './group-config.js';
import type { HaGroupEvents } from './group-events.js';

/** A plain snapshot of the group, for status output. */
export interface GroupStatus {
  /** The member that runs key management and multi-part operations, if any serves. */
  readonly primary: string | undefined;
  readonly scheduler: string;
  readonly loggedIn: boolean;
  /** Virtual objects known to this process. */
  readonly objects: number;
  readonly members: readonly MemberSnapshot[];
}

/**
 * An HA group. Open one with {@link HaGroup.open}; the application works on `group.slot`.
 *
 * @example
 * const group = await HaGroup.open({ members: [
 *   { module: '/usr/lib/softhsm/libsofthsm2.so', token: { label: 'hsm-a' } },
 *   { module: '/usr/lib/softhsm/libsofthsm2.so', token: { label: 'hsm-b' } },
 * ] });
 * const session = group.slot.openSession();
 * await session.login(pin);
 * // ...
 * await group.close();
 */
export class HaGroup extends EventEmitter<HaGroupEvents> {
  /** The virtual slot: open sessions here. */
  readonly slot: VirtualSlot;
  readonly #config: ResolvedGroupConfig;
  readonly #members: Member[];
  readonly #router: Router;
  readonly #catalog = new Catalog();
  #primary: Member | undefined;
  #closed = false;
  #login: { userType: number; pin: Secret } | undefined;

  private constructor(config: ResolvedGroupConfig) {
    super();
    this.#config = config;
    this.#members = config.members.map(
      (m) =>
        new Member({
          name: m.name,
          index: m.index,
          role: m.role,
          transport: config.transportFactory?.(m) ?? defaultTransport(m),
          maxSessions: config.maxSessionsPerMember,
          clock: config.clock,
          onStateChange: (member, previous, cause) => this.#onMemberState(member, previous, cause),
        }),
    );
    this.#router = new Router(this.#members, config.scheduler, (object) => this.#resolve(object));
    const context: SlotContext = {
      members: this.#members,
      router: this.#router,
      catalog: this.#catalog,
      checkOpen: () => {
        if (this.#closed) throw new ClosedError('group');
      },
      login: (userType, pin) => this.#loginAll(userType, pin),
      logout: () => this.#logoutAll(),
      findObjects: (template) => this.#findObjects(template),
    };
    this.slot = new VirtualSlot(context);
  }

  /**
   * Validates the configuration, connects every member in parallel and returns the
   * group. Members that cannot be reached start failed (see `status()`); the group opens
   * as long as one member connects.
   *
   * @throws {@link ConfigError} for a bad configuration
   * @throws {@link NoMemberAvailableError} when no member connects
   */
  static async open(config: GroupConfig): Promise<HaGroup> {
    const group = new HaGroup(resolveGroupConfig(config));
    const results = await Promise.allSettled(group.#members.map((m) => m.connect()));
    if (!results.some((r) => r.status === 'fulfilled')) {
      const causes = results.map((r, i) => `${group.#members[i]!.name}: ${r.status === 'rejected' ? (r.reason as Error).message : 'ok'}`);
      await group.close();
      // A configuration mistake is clearer than "no member": surface it as it is.
      const first = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (first && HaError.is(first.reason) && first.reason.code === 'ERR_CONFIG') throw first.reason;
      throw new NoMemberAvailableError(`no member could be reached: ${causes.join('; ')}`);
    }
    return group;
  }

  /** The members, in configured order (read-only views for status and tests). */
  get members(): readonly Member[] {
    return this.#members;
  }

  /** The primary member's name: the first serving active member, or a standby one if none. */
  get primary(): string | undefined {
    return this.#primary?.name;
  }

  /** A plain snapshot of the group. */
  status(): GroupStatus {
    return {
      primary: this.primary,
      scheduler: this.#router.scheduler.name,
      loggedIn: this.#login !== undefined,
      objects: this.#catalog.size,
      members: this.#members.map((m) => m.snapshot()),
    };
  }

  /** Closes every member and the group. Sessions fail with `ERR_CLOSED` afterwards. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled(this.#members.map((m) => m.close()));
    this.#login = undefined;
  }

  #onMemberState(member: Member, previous: { kind: MemberSnapshot['state']['kind'] }, cause: Error | undefined): void {
    this.emit('memberStateChanged', {
      member: member.name,
      previous: previous.kind,
      current: member.state,
      ...(cause ? { reason: cause.message } : {}),
    });
    if (!member.serving) this.#catalog.forgetMember(member.index);
    const next = this.#members.find((m) => m.serving && m.role === 'active') ?? this.#members.find((m) => m.serving);
    if (next !== this.#primary) {
      const before = this.#primary?.name;
      this.#primary = next;
      this.emit('primaryChanged', { previous: before, current: next?.name });
    }
  }

  /** Serving members, primary first, then the rest in order. */
  #serving(): Member[] {
    const serving = this.#members.filter((m) => m.serving);
    return this.#primary ? [this.#primary, ...serving.filter((m) => m !== this.#primary)] : serving;
  }

  async #loginAll(userType: number, pin: string): Promise<void> {
    if (this.#login !== undefined) {
      throw new Pkcs11Error('CKR_USER_ALREADY_LOGGED_IN', pkcs11js.CKR_USER_ALREADY_LOGGED_IN, 'C_Login', undefined, 'caller');
    }
    // Verify the PIN on one member; a member that fails under us (not over the PIN)
    // passes the turn to the next one.
    const members = this.#serving();
    let verifier: Member | undefined;
    let lastError: unknown;
    for (const m of members) {
      try {
        await m.login(userType, pin);
        verifier = m;
        break;
      } catch (error) {
        if (classifyError(error) !== 'member') throw error;
        lastError = error;
      }
    }
    if (verifier === undefined) throw new NoMemberAvailableError('no member could verify the PIN', { cause: lastError });
    this.#login = { userType, pin: Secret.of(pin) };
    await Promise.all(
      members
        .filter((m) => m !== verifier)
        .map(async (m) => {
          try {
            await m.login(userType, pin);
          } catch (error) {
            // The PIN was good on the verifier: a member refusing it is out of step with
            // the group, not the caller's mistake. Take it out rather than fail the login.
            m.fail(`login refused after the PIN was verified on ${verifier.name}: ${(error as Error).message}`, error as Error);
          }
        }),
    );
  }

  async #logoutAll(): Promise<void> {
    if (this.#login === undefined) {
      throw new Pkcs11Error('CKR_USER_NOT_LOGGED_IN', pkcs11js.CKR_USER_NOT_LOGGED_IN, 'C_Logout', undefined, 'caller');
    }
    this.#login = undefined;
    await Promise.allSettled(this.#serving().map((m) => m.logout()));
    // Tokens hand out new handles for private objects after the next login: forget the
    // member handles; virtual handles stay and are matched again on first use.
    this.#catalog.forgetHolders();
  }

  /** Finds an object's holders again by its identity (virtual handles survive a logout). */
  async #resolve(object: VirtualObject): Promise<void> {
    await this.#findObjects(object.identity.search);
  }

  async #findObjects(template: readonly Pkcs11Attribute[]): Promise<ObjectHandle[]> {
    const members = this.#members.filter((m) => m.serving);
    const found = await Promise.allSettled(
      members.map(async (m) => {
        const handles = await m.run<'findObjects'>((session) => ({ op: 'findObjects', session, template }));
        const fresh = handles.filter((h) => this.#catalog.byMemberHandle(m.index, h) === undefined);
        const identities = await Promise.all(
          fresh.map((h) => m.run<'getAttributes'>((session) => ({ op: 'getAttributes', session, object: h, types: IDENTITY_ATTRIBUTES }))),
        );
        return { member: m, handles, fresh, identities };
      }),
    );
    const result = new Set<ObjectHandle>();
    let answered = 0;
    let lastError: unknown;
    // Adopt in member order so that virtual handle numbers do not depend on timing.
    for (const r of found) {
      if (r.status === 'rejected') {
        if (classifyError(r.reason) !== 'member') throw r.reason;
        lastError = r.reason;
        continue;
      }
      answered++;
      const { member, handles, fresh, identities } = r.value;
      fresh.forEach((h, i) => this.#adopt(member, h, identities[i]!));
      for (const h of handles) {
        const object = this.#catalog.byMemberHandle(member.index, h);
        if (object) result.add(object.handle);
      }
    }
    if (answered === 0) throw new NoMemberAvailableError('no member could search for objects', { cause: lastError });
    return [...result].sort((a, b) => a - b);
  }

  #adopt(member: Member, handle: Handle, attributes: readonly ReadAttribute[]): VirtualObject {
    const { object, conflict } = this.#catalog.adopt(member.index, handle, identityFrom(attributes));
    if (conflict) {
      this.emit('identityConflict', { name: conflict.name, existing: conflict.existing, incoming: conflict.incoming, member: member.name });
    }
    return object;
  }
}

function defaultTransport(m: ResolvedMemberConfig): InProcessTransport {
  return new InProcessTransport({
    member: m.name,
    modulePath: m.modulePath,
    moduleEnv: m.moduleEnv,
    token: m.token,
    threads: m.threads,
    configPath: m.path,
  });
}
