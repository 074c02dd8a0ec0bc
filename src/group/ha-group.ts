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
import { carryDomainKey, createDomainKey, DomainError, isDomainKeyName, readMemberDomain, type MemberDomain } from '../replication/domain-key.js';
import { Journal } from '../replication/journal.js';
import { KeyManager } from '../replication/key-manager.js';
import { toMechanism } from '../pkcs11/templates.js';

/** A plain snapshot of the group, for status output. */
export interface GroupStatus {
  /** The member that runs key management and multi-part operations, if any serves. */
  readonly primary: string | undefined;
  readonly scheduler: string;
  readonly loggedIn: boolean;
  /** Virtual objects known to this process. */
  readonly objects: number;
  /** Check value of the group's domain key, or undefined when the group has none. */
  readonly domain: string | undefined;
  /** Members that owe replicas, deletions or attribute changes, with counts. */
  readonly owed: Readonly<Record<string, number>>;
  readonly members: readonly MemberSnapshot[];
}

/** What `HaGroup.initDomain` did. */
export interface DomainInitResult {
  /** Check value of the domain key (the same on every member). */
  readonly checkValue: string;
  /** The member the key was made on or carried from. */
  readonly source: string;
  /** True when a new domain key was generated (no member had one). */
  readonly created: boolean;
  /** Members that received the key now. */
  readonly joined: readonly string[];
  /** Members that could not be reached and have no domain key yet. */
  readonly skipped: readonly string[];
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
  readonly #journal: Journal;
  readonly #keys: KeyManager;
  /** Member index -> that member's handle of the domain key. */
  readonly #domainKeys = new Map<number, Handle>();
  #domainCheckValue: string | undefined;
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
    this.#router = new Router(this.#members, config.scheduler, (object) => this.#resolve(object), config.clock);
    this.#journal = new Journal(config.journalPath);
    this.#keys = new KeyManager({
      members: this.#members,
      catalog: this.#catalog,
      journal: this.#journal,
      primary: () => this.#primary,
      domainKey: (m) => this.#domainKeys.get(m.index),
      minReplicas: config.minReplicas,
      unextractable: config.unextractableKeys,
      onReplicaMissed: (e) => this.emit('replicaMissed', e),
      resolve: (object) => this.#resolve(object),
    });
    const context: SlotContext = {
      members: this.#members,
      router: this.#router,
      catalog: this.#catalog,
      keys: this.#keys,
      journal: this.#journal,
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
    const group = await HaGroup.#connect(config);
    await group.#checkDomain();
    return group;
  }

  static async #connect(config: GroupConfig): Promise<HaGroup> {
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

  /**
   * Gives every member the same domain key (the security domain ceremony; the CLI's
   * `pkcs11-ha init`). Generates one on the first member if no member has one, then
   * carries it to each member that lacks it, wrapped under a one-time transport key the
   * security officer marks trusted: it is never in plaintext outside a member. Needs
   * every member's `soPin`. Refuses when two members already hold different domain keys.
   *
   * @throws {@link DomainError} on different domain keys, a missing SO PIN, or no reachable member
   */
  static async initDomain(config: GroupConfig): Promise<DomainInitResult> {
    const group = await HaGroup.#connect(config);
    try {
      return await group.#initDomain();
    } finally {
      await group.close();
    }
  }

  async #initDomain(): Promise<DomainInitResult> {
    const serving = this.#members.filter((m) => m.serving);
    const skipped = this.#members.filter((m) => !m.serving).map((m) => m.name);
    const missingPin = serving.filter((m) => this.#config.members[m.index]!.soPin === undefined).map((m) => m.name);
    if (missingPin.length > 0) throw new DomainError(`the domain ceremony needs the SO PIN (soPin) of: ${missingPin.join(', ')}`);
    const domains = await Promise.all(serving.map((m) => readMemberDomain(m)));
    const ambiguous = serving.filter((_, i) => domains[i]!.kind === 'ambiguous').map((m) => m.name);
    if (ambiguous.length > 0) throw new DomainError(`members hold more than one domain key: ${ambiguous.join(', ')}`);
    const values = new Set(domains.flatMap((d) => (d.kind === 'key' ? [d.checkValue] : [])));
    if (values.size > 1) {
      throw new DomainError(
        `members hold different domain keys (${serving.map((m, i) => `${m.name}: ${describeDomain(domains[i]!)}`).join(', ')}); ` +
          'refusing to choose: remove the wrong one by hand first',
      );
    }
    let sourceIndex = domains.findIndex((d) => d.kind === 'key');
    const created = sourceIndex < 0;
    if (created) sourceIndex = 0;
    if (!created && domains.every((d) => d.kind === 'key')) {
      // Nothing to do: no SO login (it would clash with a user logged in on these tokens).
      const d = domains[0] as Extract<MemberDomain, { kind: 'key' }>;
      return { checkValue: d.checkValue, source: serving[sourceIndex]!.name, created: false, joined: [], skipped };
    }
    // All or nothing: a refused SO login must not leave the other tokens logged in as SO.
    const logins = await Promise.allSettled(serving.map((m) => m.login(pkcs11js.CKU_SO, this.#config.members[m.index]!.soPin!.reveal())));
    const refused = logins.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (refused) {
      await Promise.allSettled(serving.map((m) => m.logout()));
      throw new DomainError(`the security officer could not log in on every member: ${(refused.reason as Error).message}`, { cause: refused.reason });
    }
    try {
      const source = serving[sourceIndex]!;
      const found = domains[sourceIndex]!;
      const sourceKey = found.kind === 'key' ? found.handle : await createDomainKey(source);
      const targets = serving.filter((_, i) => i !== sourceIndex && domains[i]!.kind === 'none');
      const carried = await Promise.allSettled(targets.map((t) => carryDomainKey(source, sourceKey, t)));
      const failed = carried.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      const after = await Promise.all(serving.map((m) => readMemberDomain(m)));
      const checks = new Set(after.map(describeDomain));
      if (checks.size !== 1 || after[0]!.kind !== 'key') throw new DomainError(`the domain key did not come out the same everywhere: ${[...checks].join(', ')}`);
      return { checkValue: after[0]!.checkValue, source: source.name, created, joined: targets.map((t) => t.name), skipped };
    } finally {
      await Promise.allSettled(serving.map((m) => m.logout()));
    }
  }

  /**
   * Reads every member's domain key and refuses (fails) members whose key differs from
   * the group's, or that have none while the group has one. A group where no member has
   * a domain key opens too: stateless operations work, key replication refuses.
   */
  async #checkDomain(): Promise<void> {
    const serving = this.#members.filter((m) => m.serving);
    const domains = await Promise.all(serving.map((m) => readMemberDomain(m).catch((error: unknown) => error as Error)));
    const reference = domains.find((d): d is Extract<MemberDomain, { kind: 'key' }> => !(d instanceof Error) && d.kind === 'key');
    this.#domainCheckValue = reference?.checkValue;
    serving.forEach((m, i) => {
      const d = domains[i]!;
      if (d instanceof Error) {
        // A member fault already failed it; anything else leaves its domain unproven, and a
        // member without a proven domain key could merge different keys into one object.
        if (reference !== undefined && m.serving) m.fail(`refused: its domain key could not be checked (${d.message})`, d);
        return;
      }
      if (d.kind === 'key' && d.checkValue === reference?.checkValue) {
        this.#domainKeys.set(m.index, d.handle);
      } else if (reference !== undefined) {
        const why = d.kind === 'key' ? `its domain key ${d.checkValue} differs from the group's ${reference.checkValue}` : d.kind === 'none' ? 'it has no domain key' : `it holds ${d.count} domain keys`;
        m.fail(`refused: ${why}`, new DomainError(`member ${m.name} refused: ${why}`));
      }
    });
  }

  /** The members, in configured order (read-only views for status and tests). */
  get members(): readonly Member[] {
    return this.#members;
  }

  /** The primary member's name: the first serving active member, or a standby one if none. */
  get primary(): string | undefined {
    return this.#primary?.name;
  }

  /**
   * Where an object lives: the members holding it now and its identity evidence. For
   * diagnostics and tests; the application needs none of it.
   */
  describeObject(handle: ObjectHandle): { readonly holders: readonly string[]; readonly name: string; readonly fingerprint: string | undefined } | undefined {
    const object = this.#catalog.get(handle);
    if (object === undefined) return undefined;
    return {
      holders: [...object.holders.keys()].sort((a, b) => a - b).map((i) => this.#members[i]!.name),
      name: object.identity.name,
      fingerprint: object.identity.fingerprint,
    };
  }

  /** A plain snapshot of the group. */
  status(): GroupStatus {
    return {
      primary: this.primary,
      scheduler: this.#router.scheduler.name,
      loggedIn: this.#login !== undefined,
      objects: this.#catalog.size,
      domain: this.#domainCheckValue,
      owed: this.#journal.summary(),
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
        const domainKey = this.#domainKeys.get(m.index);
        const unknown = handles.filter((h) => this.#catalog.byMemberHandle(m.index, h) === undefined && !(domainKey?.equals(h) ?? false));
        const read = await Promise.all(
          unknown.map((h) => m.run<'getAttributes'>((session) => ({ op: 'getAttributes', session, object: h, types: IDENTITY_ATTRIBUTES }))),
        );
        // The domain key is the group's, never the application's: with it, any replicated
        // key could be unwrapped again as a non-sensitive copy.
        const value = (attrs: readonly ReadAttribute[], type: number) => attrs.find((a) => a.type === type)?.value;
        const keep = unknown.map((_, i) => !isDomainKeyName(value(read[i]!, pkcs11js.CKA_LABEL), value(read[i]!, pkcs11js.CKA_ID)));
        const fresh = unknown.filter((_, i) => keep[i]);
        const identities = await Promise.all(
          fresh.map(async (h, i) => {
            const attrs = read.filter((_, j) => keep[j])[i]!;
            return { read: attrs, wrapped: await this.#domainWrap(m, h, attrs) };
          }),
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
      fresh.forEach((h, i) => this.#adopt(member, h, identities[i]!.read, identities[i]!.wrapped));
      for (const h of handles) {
        const object = this.#catalog.byMemberHandle(member.index, h);
        if (object) result.add(object.handle);
      }
    }
    if (answered === 0) throw new NoMemberAvailableError('no member could search for objects', { cause: lastError });
    return [...result].sort((a, b) => a - b);
  }

  /**
   * The key wrapped under the domain key, as identity evidence (AES key wrap with padding
   * is deterministic). Undefined for objects that are not keys or cannot be wrapped.
   */
  async #domainWrap(member: Member, handle: Handle, read: readonly ReadAttribute[]): Promise<Buffer | undefined> {
    const domainKey = this.#domainKeys.get(member.index);
    const cls = read.find((a) => a.type === pkcs11js.CKA_CLASS)?.value;
    const objectClass = cls && cls.length >= 8 ? Number(cls.readBigUInt64LE(0)) : undefined;
    if (domainKey === undefined || (objectClass !== pkcs11js.CKO_SECRET_KEY && objectClass !== pkcs11js.CKO_PRIVATE_KEY) || handle.equals(domainKey)) return undefined;
    return member
      .run<'wrapKey'>((session) => ({ op: 'wrapKey', session, mechanism: toMechanism('AES_KEY_WRAP_PAD'), wrappingKey: domainKey, key: handle }))
      .catch(() => undefined);
  }

  #adopt(member: Member, handle: Handle, attributes: readonly ReadAttribute[], wrapped: Buffer | undefined): VirtualObject {
    const { object, conflict } = this.#catalog.adopt(member.index, handle, identityFrom(attributes, wrapped));
    // A member that owes something for this object is not used for it until repaired.
    if (this.#journal.owes(member.name, object)) this.#catalog.unlink(object, member.index);
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

function describeDomain(d: MemberDomain): string {
  return d.kind === 'key' ? d.checkValue : d.kind === 'none' ? 'none' : `${d.count} keys`;
}
