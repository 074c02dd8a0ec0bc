/**
 * An HA group: several PKCS#11 tokens joined into one virtual slot.
 */
import { EventEmitter } from 'eventemitter3';
import { Catalog, type ObjectHandle, type VirtualObject } from '../catalog/catalog.js';
import { IDENTITY_ATTRIBUTES, identityFrom } from '../catalog/object-identity.js';
import { classifyError } from '../errors/classification.js';
import { ClosedError, HaError, MemberUnreachableError, NoMemberAvailableError, Pkcs11Error } from '../errors/ha-error.js';
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
import { HostTransport } from '../transport/host-transport.js';
import { memberConfig, resolveGroupConfig, transportOptions, type GroupConfig, type MemberConfig, type ResolvedGroupConfig, type ResolvedMemberConfig } from './group-config.js';
import { RecoveryLoop } from '../recovery/recovery-loop.js';
import type { Transport } from '../transport/transport.js';
import type { MemberRole, MemberState } from '../member/member-state.js';
import { ConfigError, InvalidArgumentError } from '../errors/ha-error.js';
import type { HaGroupEvents } from './group-events.js';
import { carryDomainKey, createDomainKey, DomainError, isDomainKeyName, readMemberDomain, type MemberDomain } from '../replication/domain-key.js';
import { Journal } from '../replication/journal.js';
import { KeyManager } from '../replication/key-manager.js';
import { removeStrays } from '../replication/strays.js';
import { resyncMember } from '../replication/resync.js';
import { readReplicaSource } from '../replication/replica-copy.js';
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
  readonly members: readonly MemberStatus[];
}

/** One member in {@link GroupStatus}: its snapshot and how many items it owes the group. */
export interface MemberStatus extends MemberSnapshot {
  /** Replicas, deletions and attribute changes this member still owes. */
  readonly owed: number;
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
  /** Each member's resolved configuration (PINs for re-login, transport options). */
  readonly #configs = new Map<Member, ResolvedMemberConfig>();
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
  readonly #recovery: RecoveryLoop;
  /** Members whose automatic recovery stopped for a reason retrying cannot fix (a refused PIN, another domain key). */
  readonly #noAutoRecovery = new Set<string>();
  /** Members added online that have not completed their first synchronisation. */
  readonly #needsFullSync = new Set<Member>();

  private constructor(config: ResolvedGroupConfig) {
    super();
    this.#config = config;
    this.#members = config.members.map((m) => this.#newMember(m));
    this.#recovery = new RecoveryLoop({
      ...config.recovery,
      clock: config.clock,
      attempt: (name) => this.#attemptRecovery(name),
      failedAttempts: (name) => {
        const state = this.#member(name)?.state;
        return state?.kind === 'failed' && !this.#noAutoRecovery.has(name) ? state.attempts : undefined;
      },
    });
    this.#router = new Router(
      this.#members,
      config.scheduler,
      (object, stale) => {
        if (stale !== undefined) this.#catalog.unlink(object, stale);
        return this.#resolve(object);
      },
      config.clock,
    );
    this.#journal = new Journal(config.journalPath);
    this.#keys = new KeyManager({
      members: this.#members,
      catalog: this.#catalog,
      journal: this.#journal,
      primary: () => this.#primary,
      domainKey: (m) => this.#domainKeys.get(m.index),
      minReplicas: config.minReplicas,
      unextractable: config.unextractableKeys,
      staging: config.keyCreation === 'parallel',
      onReplicaMissed: (e) => {
        this.emit('replicationOwed', e);
        this.emit('replicaMissed', e);
      },
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
    const owed = this.#journal.summary();
    return {
      primary: this.primary,
      scheduler: this.#router.scheduler.name,
      loggedIn: this.#login !== undefined,
      objects: this.#catalog.size,
      domain: this.#domainCheckValue,
      owed,
      members: this.#members.map((m) => ({ ...m.snapshot(), owed: owed[m.name] ?? 0 })),
    };
  }

  /** Closes every member and the group. Sessions fail with `ERR_CLOSED` afterwards. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#recovery.close();
    await Promise.allSettled(this.#members.map((m) => m.close()));
    this.#login = undefined;
  }

  /**
   * Recovers a failed member now (the background loop does the same on its own, see the
   * `recovery` option): reconnects it, logs it in, checks its domain key, settles what it
   * owes, and only then lets it take traffic again.
   *
   * @returns true when the member serves again
   * @throws {@link InvalidArgumentError} for an unknown member name
   */
  async recover(name: string): Promise<boolean> {
    this.#checkOpen();
    const member = this.#member(name);
    if (member === undefined) throw new InvalidArgumentError(`no member named ${JSON.stringify(name)}`);
    if (member.serving) return true;
    // A manual attempt is the operator's decision: it may retry what the loop gave up on.
    this.#noAutoRecovery.delete(name);
    await this.#recovery.run(name);
    return member.serving;
  }

  /**
   * Adds a member online. It is connected, logged in, checked for the group's domain key
   * and given every token object the group holds before it takes any traffic.
   *
   * @returns the new member's name
   * @throws {@link ConfigError} for a bad member configuration or a duplicate name
   * @throws {@link InvalidArgumentError} when the group has a domain and nobody is logged in
   */
  async addMember(config: MemberConfig): Promise<string> {
    this.#checkOpen();
    const resolved = memberConfig(config, this.#members.length, this.#config.members[0]?.threads ?? 2);
    if (this.#member(resolved.name) !== undefined) throw new ConfigError(`${resolved.path}.name`, `duplicate member name ${JSON.stringify(resolved.name)}`);
    if (this.#members.length >= 64) throw new ConfigError('members', 'at most 64 members');
    // Private objects are visible only to a logged-in user: a member added before the
    // login would silently miss every private key.
    if (this.#login === undefined && this.#domainCheckValue !== undefined) {
      throw new InvalidArgumentError('log in before adding a member: private keys can be copied to it only while logged in');
    }
    this.#noAutoRecovery.add(resolved.name); // no background attempt before the first one
    const member = this.#newMember(resolved);
    this.#members.push(member);
    this.#configs.set(member, resolved);
    // Every attempt until one succeeds copies every token object first.
    this.#needsFullSync.add(member);
    try {
      await this.#attemptRecovery(resolved.name);
    } finally {
      this.#noAutoRecovery.delete(resolved.name);
    }
    if (!member.serving) {
      // It stays in the group, failed; the background loop keeps trying (with the full sync).
      const failed = member.state;
      if (failed.kind === 'failed') this.#recovery.failed(member.name, failed.attempts);
      const state = member.state;
      throw new MemberUnreachableError(member.name, `could not join: ${state.kind === 'failed' ? state.reason : state.kind}`);
    }
    return member.name;
  }

  /** Removes a member online: its sessions and transport are closed and it takes no more traffic. */
  async removeMember(name: string): Promise<void> {
    this.#checkOpen();
    const member = this.#member(name);
    if (member === undefined) throw new InvalidArgumentError(`no member named ${JSON.stringify(name)}`);
    this.#recovery.cancel(name);
    this.#needsFullSync.delete(member);
    await member.close();
    // What it owed means nothing now, and must not pass to a member later added under its name.
    this.#journal.forgetMember(name);
  }

  /**
   * Marks a member standby (it is kept current but takes load only when no active member
   * is left) or active again, online.
   */
  setStandby(name: string, standby: boolean): void {
    this.#checkOpen();
    const member = this.#member(name);
    if (member === undefined) throw new InvalidArgumentError(`no member named ${JSON.stringify(name)}`);
    const role: MemberRole = standby ? 'standby' : 'active';
    if (member.role === role) return;
    member.setRole(role);
    // setRole changes the state (and so re-balances) only while serving.
    this.#rebalance();
  }

  #onMemberState(member: Member, previous: MemberState, cause: Error | undefined): void {
    const current = member.state;
    this.emit('memberStateChanged', {
      member: member.name,
      previous: previous.kind,
      current,
      ...(cause ? { reason: cause.message } : {}),
    });
    if (current.kind === 'failed') {
      if (previous.kind === 'recovering') this.emit('recoveryFailed', { member: member.name, attempt: previous.attempt, reason: current.reason });
      else if (previous.kind !== 'failed') this.emit('memberFailed', { member: member.name, reason: current.reason });
      if (!this.#closed && !this.#noAutoRecovery.has(member.name)) this.#recovery.failed(member.name, current.attempts);
    }
    if (!member.serving) this.#catalog.forgetMember(member.index);
    this.#rebalance();
  }

  /** Promotes standby members when no active one serves, demotes them when one is back; re-elects the primary. */
  #rebalance(): void {
    const activeServing = this.#members.some((m) => m.serving && m.role === 'active');
    for (const m of this.#members) {
      if (!activeServing && m.serving && m.role === 'standby' && !m.promoted) {
        m.promoted = true;
        this.emit('standbyPromoted', { member: m.name });
      } else if (activeServing && m.promoted && this.#config.demoteStandbys) {
        m.promoted = false;
        this.emit('standbyDemoted', { member: m.name });
      }
    }
    const next = this.#members.find((m) => m.serving && (m.role === 'active' || m.promoted)) ?? this.#members.find((m) => m.serving);
    if (next !== this.#primary) {
      const before = this.#primary?.name;
      this.#primary = next;
      this.emit('primaryChanged', { previous: before, current: next?.name });
    }
  }

  #member(name: string): Member | undefined {
    return this.#members.find((m) => m.name === name && m.state.kind !== 'removed');
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('group');
  }

  #newMember(m: ResolvedMemberConfig): Member {
    const member = new Member({
      name: m.name,
      index: m.index,
      role: m.role,
      transport: this.#makeTransport(m),
      newTransport: () => this.#makeTransport(m),
      maxSessions: this.#config.maxSessionsPerMember,
      deadlineMs: this.#config.deadlineMs,
      ceilingMs: this.#config.ceilingMs,
      clock: this.#config.clock,
      onStateChange: (changed, previous, cause) => this.#onMemberState(changed, previous, cause),
    });
    this.#configs.set(member, m);
    return member;
  }

  #makeTransport(m: ResolvedMemberConfig): Transport {
    const makeDefault = (): Transport => defaultTransport(m, this.#config);
    return this.#config.transportFactory?.(m, makeDefault) ?? makeDefault();
  }

  /**
   * One recovery attempt: reconnect, log in, check the domain key, settle debts, find the
   * member's objects again, and only then take traffic. Any failure leaves the member failed
   * (one more attempt counted); the loop schedules the next one.
   */
  async #attemptRecovery(name: string): Promise<void> {
    const member = this.#member(name);
    if (member === undefined || member.state.kind !== 'failed' || this.#closed) return;
    try {
      await member.reconnect();
      await this.#restore(member, this.#needsFullSync.has(member));
      // Replications, deletions and logins that happened while it was being restored: settle
      // them too, then rejoin with no await in between (nothing can slip through).
      // A debt that cannot be settled (e.g. a redacted attribute change) stays owed: the
      // member then serves, but never for that object; rounds stop when one settles nothing.
      let owedBefore = Infinity;
      for (let round = 0; ; round++) {
        const state = member.state as MemberState;
        if (this.#closed || state.kind !== 'recovering') return;
        const owed = this.#journal.debts(member.name).length;
        const loginOff = (this.#login !== undefined) !== member.loggedIn;
        if ((owed === 0 || owed >= owedBefore) && !loginOff) break;
        if (round >= 10) throw new MemberUnreachableError(member.name, 'could not catch up with the group in 10 rounds');
        owedBefore = owed;
        await this.#matchLogin(member);
        await this.#resync(member, false);
        await this.#scanMember(member);
      }
      this.#needsFullSync.delete(member);
      const state = member.state as MemberState;
      if (state.kind !== 'recovering') return;
      member.rejoin();
      const attempt = state.attempt;
      this.emit('memberRecovered', { member: name, attempts: attempt });
    } catch (error) {
      if ((member.state as MemberState).kind === 'recovering') member.fail(`recovery: ${(error as Error).message}`, error as Error);
    }
  }

  /**
   * Brings a recovering member's login state in line with the group's: logged in (with its
   * own `userPin` when configured, else the application's PIN) exactly while the group is.
   */
  async #matchLogin(member: Member): Promise<void> {
    const login = this.#login;
    if (login === undefined) {
      if (member.loggedIn) await member.logout();
      return;
    }
    if (member.loggedIn) return;
    const own = this.#configs.get(member)?.userPin;
    try {
      await member.login(login.userType, (own ?? login.pin).reveal());
    } catch (error) {
      // Retrying a refused PIN could lock the token: stop until someone recovers it by hand.
      if (error instanceof Pkcs11Error && /^CKR_PIN_/.test(error.ckr)) this.#noAutoRecovery.add(member.name);
      throw error;
    }
  }

  /** Brings a reconnected member back in step with the group (it takes no traffic meanwhile). */
  async #restore(member: Member, fullSync: boolean): Promise<void> {
    await this.#matchLogin(member);
    const domain = await readMemberDomain(member);
    if (this.#domainCheckValue !== undefined) {
      if (domain.kind !== 'key' || domain.checkValue !== this.#domainCheckValue) {
        this.#noAutoRecovery.add(member.name);
        throw new DomainError(`member ${member.name} refused: ${domain.kind === 'key' ? `its domain key ${domain.checkValue} differs from the group's` : domain.kind === 'none' ? 'it has no domain key' : 'it holds several domain keys'}`);
      }
      this.#domainKeys.set(member.index, domain.handle);
    } else if (domain.kind === 'key') {
      this.#domainKeys.set(member.index, domain.handle);
    }
    await this.#resync(member, fullSync);
    await this.#scanMember(member);
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
    // passes the turn to the next one. A token already logged in (by other code sharing
    // its module) answers "already logged in" whatever the PIN: it proves nothing, so the
    // turn passes on too; logging it out would pull the login from under that code.
    const members = this.#serving();
    let verifier: Member | undefined;
    const already: Member[] = [];
    let lastError: unknown;
    for (const m of members) {
      try {
        if (await m.login(userType, pin)) {
          verifier = m;
          break;
        }
        already.push(m);
      } catch (error) {
        if (classifyError(error) !== 'member') throw error;
        lastError = error;
      }
    }
    if (verifier === undefined && already.length === 0) throw new NoMemberAvailableError('no member could verify the PIN', { cause: lastError });
    this.#login = { userType, pin: Secret.of(pin) };
    // With no verifier (every reachable member logged in already), the PIN reaches no token.
    const checked = verifier;
    if (checked !== undefined) {
      await Promise.all(
        members
          .filter((m) => m !== checked && !already.includes(m))
          .map(async (m) => {
            try {
              await m.login(userType, pin);
            } catch (error) {
              // The PIN was good on the verifier: a member refusing it is out of step with
              // the group, not the caller's mistake. Take it out rather than fail the login.
              m.fail(`login refused after the PIN was verified on ${checked.name}: ${(error as Error).message}`, error as Error);
            }
          }),
      );
    }
    // Debts read back from the journal (the application restarted while a member owed
    // something) are settled now that private objects can be made. Before login returns:
    // a search running beside the repair could link a copy the repair is deleting.
    const owing = this.#journal.summary();
    await Promise.all(this.#members.filter((m) => m.serving && owing[m.name] !== undefined).map((m) => this.#repair(m)));
  }

  /**
   * Settles what a serving member owes, off the application's path. The member keeps
   * serving meanwhile, but not for the objects it owes (the catalog never links those).
   */
  async #repair(member: Member): Promise<void> {
    try {
      await this.#resync(member, false);
      await this.#scanMember(member);
    } catch (error) {
      // A member fault already failed the member (recovery takes over); anything else
      // leaves the debts owed for the next recovery.
      if (classifyError(error) !== 'member') this.emit('recoveryFailed', { member: member.name, attempt: 0, reason: (error as Error).message });
    }
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

  /**
   * Settles what a member owes (replicas, deletions, attribute changes) before it serves.
   * With `fullSync` (a new member) every token object the group holds is owed first.
   */
  async #resync(member: Member, fullSync: boolean): Promise<void> {
    const domainKey = this.#domainKeys.get(member.index);
    const others = this.#members.filter((m) => m.serving && m !== member).map((m) => ({ member: m, domainKey: this.#domainKeys.get(m.index) }));
    // Strays first: the replica of a creation retried elsewhere then lands on a clean member.
    await removeStrays({ member, domainKey, journal: this.#journal, others });
    if (fullSync) await this.#oweEverything(member);
    await resyncMember({
      member,
      journal: this.#journal,
      domainKey,
      catalog: this.#catalog,
      onProgress: (done, total) => this.emit('resyncProgress', { member: member.name, done, total }),
    });
    await this.slot.restoreSessions(member, { domainKey: (m) => this.#domainKeys.get(m.index) });
  }

  /**
   * A new member owes every token object the group holds: finds them all (on every serving
   * member) and records one replica debt each, read from a holder (keys wrapped under the
   * domain key there).
   */
  async #oweEverything(member: Member): Promise<void> {
    await this.#findObjects([{ type: pkcs11js.CKA_TOKEN, value: true }]);
    // What the new member already holds (same identity) it does not owe.
    await this.#scanMember(member);
    for (const object of this.#catalog.objects()) {
      if (!object.identity.token || object.holders.has(member.index)) continue;
      const [index, handle] = object.holders.entries().next().value ?? [];
      const source = index === undefined ? undefined : this.#members[index];
      if (source === undefined || handle === undefined) continue;
      const sourceKey = this.#domainKeys.get(source.index);
      if (sourceKey === undefined && this.#domainCheckValue === undefined) continue; // no domain: keys cannot travel
      const copy = await readReplicaSource(source, handle, sourceKey, false);
      if (copy.wrapped === undefined && copy.read.some((a) => a.type === pkcs11js.CKA_CLASS && a.value !== undefined && [pkcs11js.CKO_SECRET_KEY, pkcs11js.CKO_PRIVATE_KEY].includes(Number(a.value.readBigUInt64LE(0))))) continue;
      const ref = { handle: object.handle, name: object.identity.name, fingerprint: object.identity.fingerprint, search: object.identity.search, token: true };
      this.#journal.owe(member.name, { kind: 'replica', object: ref, wrapped: copy.wrapped, template: copy.template });
    }
  }

  /** Finds a member's objects again (a reconnected member hands out new handles) and links them by identity. */
  async #scanMember(member: Member): Promise<void> {
    const scanned = await this.#scan(member, []);
    scanned.fresh.forEach((h, i) => this.#adopt(member, h, scanned.identities[i]!.read, scanned.identities[i]!.wrapped));
  }

  /** Finds an object's holders again by its identity (virtual handles survive a logout). */
  async #resolve(object: VirtualObject): Promise<void> {
    await this.#findObjects(object.identity.search);
  }

  async #findObjects(template: readonly Pkcs11Attribute[]): Promise<ObjectHandle[]> {
    const members = this.#members.filter((m) => m.serving);
    const found = await Promise.allSettled(members.map((m) => this.#scan(m, template)));
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

  /** Searches one member and reads the identity of every object it shows that the catalog does not know yet. */
  async #scan(m: Member, template: readonly Pkcs11Attribute[]) {
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
    const kept = read.filter((_, j) => keep[j]);
    const identities = await Promise.all(fresh.map(async (h, i) => ({ read: kept[i]!, wrapped: await this.#domainWrap(m, h, kept[i]!) })));
    return { member: m, handles, fresh, identities };
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

function defaultTransport(m: ResolvedMemberConfig, config: ResolvedGroupConfig): Transport {
  const options = transportOptions(m);
  return config.transport === 'host' ? new HostTransport({ ...options, heartbeatIntervalMs: config.heartbeatIntervalMs, calls: config.hostCalls }) : new InProcessTransport({ ...options, calls: config.inProcessCalls });
}

function describeDomain(d: MemberDomain): string {
  return d.kind === 'key' ? d.checkValue : d.kind === 'none' ? 'none' : `${d.count} keys`;
}
