/**
 * An HA group: several PKCS#11 tokens joined into one virtual slot. A thin facade: it
 * builds the collaborators (membership, catalog and discovery, domain, journal, login,
 * router, key management, recovery), hands each what it needs at construction, and turns
 * member state changes into elections, recovery and events.
 */
import { EventEmitter } from 'eventemitter3';
import { openAdminEndpoint } from '../admin/admin-server.js';
import { Catalog, type ObjectHandle } from '../catalog/catalog.js';
import { ObjectDiscovery } from '../catalog/object-discovery.js';
import { ClosedError, ConfigError, HaError, InvalidArgumentError, MemberUnreachableError, NoMemberAvailableError } from '../errors/ha-error.js';
import type { HaGroupEvents } from '../events/group-events.js';
import { GroupLogin } from '../login/group-login.js';
import type { Member } from '../member/member.js';
import type { MemberState } from '../member/member-state.js';
import { Membership } from '../member/membership.js';
import { MemberRecovery } from '../recovery/member-recovery.js';
import { OpenSessions } from '../recovery/open-sessions.js';
import { initDomain, type DomainInitResult } from '../replication/domain-ceremony.js';
import { GroupDomain } from '../replication/group-domain.js';
import type { DebtJournal } from '../replication/journal.js';
import { createJournal } from './journal-backend.js';
import { KeyManager } from '../replication/key-manager.js';
import { FailoverPolicy } from '../routing/failover-policy.js';
import { Router } from '../routing/router.js';
import { VirtualSlot } from '../slot/virtual-slot.js';
import { multipartSettings } from '../slot/multipart-session.js';
import { memberConfig, resolveGroupConfig, type GroupConfig, type MemberConfig, type ResolvedGroupConfig } from './group-config.js';
import { registerInternals } from './group-internals.js';
import type { GroupStatus, ObjectDescription } from './group-status.js';
import { createMember } from './member-factory.js';
import { groupStatus, loadMetrics, observeGroup, type GroupObserver, type PromClientModule } from './group-observability.js';

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
  readonly #membership: Membership;
  readonly #catalog = new Catalog();
  readonly #domain = new GroupDomain();
  readonly #journal: DebtJournal;
  readonly #login: GroupLogin;
  readonly #router: Router;
  readonly #recovery: MemberRecovery;
  readonly #closed = new AbortController();
  /** Events, member commands and reruns pass through it (times, metrics, channels, logger). */
  readonly #observer: GroupObserver;

  private constructor(config: ResolvedGroupConfig, prom: PromClientModule | undefined) {
    super();
    this.#config = config;
    const events = (this.#observer = observeGroup(this, config, prom, () => this.status()));
    const membership = (this.#membership = new Membership({ demoteStandbys: config.demoteStandbys }));
    for (const m of config.members) membership.add(createMember(m, config, (member, previous, cause) => this.#onMemberState(member, previous, cause), events));
    const catalog = this.#catalog;
    const journal = (this.#journal = createJournal(config));
    const discovery = new ObjectDiscovery({ membership, catalog, domain: this.#domain, debts: journal, events });
    const login = (this.#login = new GroupLogin({ membership, catalog }));
    // One failover policy decides, for stateless calls and key management alike, whether a
    // failed attempt runs again, where and how often.
    const failover = new FailoverPolicy({ onRerun: events.rerun });
    const router = (this.#router = new Router({ members: membership.all, scheduler: config.scheduler, discovery, clock: config.clock, failover }));
    const keys = new KeyManager({
      membership,
      catalog,
      journal,
      domain: this.#domain,
      minReplicas: config.minReplicas,
      unextractable: config.unextractableKeys,
      staging: config.keyCreation === 'parallel',
      events,
      discovery,
      failover,
    });
    const openSessions = new OpenSessions();
    const recovery = (this.#recovery = new MemberRecovery({
      membership,
      catalog,
      discovery,
      domain: this.#domain,
      journal,
      login,
      sessions: openSessions,
      events,
      policy: config.recovery,
      clock: config.clock,
      signal: this.#closed.signal,
    }));
    this.slot = new VirtualSlot({ membership, router, catalog, discovery, keys, journal, login, recovery, openSessions, closed: this.#closed.signal, multipart: multipartSettings(config, failover, router) });
    registerInternals(this, { members: membership.all, membership, catalog, discovery, journal, domain: this.#domain, router, keys, recovery, openSessions });
  }

  /**
   * Validates the configuration, connects every member in parallel and returns the
   * group. Members that cannot be reached start failed (see `status()`; the listeners of
   * the `on` option hear `memberConnectFailed`); the group opens as long as one connects. Members whose domain key differs from the group's are
   * refused (failed).
   *
   * @throws {@link ConfigError} for a bad configuration
   * @throws {@link NoMemberAvailableError} when no member connects
   */
  static async open(config: GroupConfig): Promise<HaGroup> {
    const group = await HaGroup.#connect(config);
    await group.#domain.check(group.#membership.all);
    if (group.#config.admin) await openAdminEndpoint(group.#config.admin, group, { settle: () => group.#recovery.repairOwing(), signal: group.#closed.signal });
    return group;
  }

  static async #connect(config: GroupConfig): Promise<HaGroup> {
    const resolved = resolveGroupConfig(config);
    const group = new HaGroup(resolved, await loadMetrics(resolved));
    try {
      await group.#journal.load();
    } catch (error) {
      await group.close();
      throw error;
    }
    const members = group.#membership.all;
    const results = await Promise.allSettled(members.map((m) => m.connect()));
    group.#observer.opened(members, results);
    if (!results.some((r) => r.status === 'fulfilled')) {
      const causes = results.map((r, i) => `${members[i]!.name}: ${r.status === 'rejected' ? (r.reason as Error).message : 'ok'}`);
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
      return await initDomain(group.#membership.all, (m) => m.soPin);
    } finally {
      await group.close();
    }
  }

  /** The primary member's name: the first serving active member, or a promoted standby one if none. */
  get primary(): string | undefined {
    return this.#membership.primary?.name;
  }

  /**
   * Where an object lives: the members holding it now and its identity evidence. For
   * diagnostics and tests; the application needs none of it.
   */
  describeObject(handle: ObjectHandle): ObjectDescription | undefined {
    const object = this.#catalog.get(handle);
    if (object === undefined) return undefined;
    return {
      holders: [...object.holders.keys()].sort((a, b) => a - b).map((i) => this.#membership.at(i)!.name),
      name: object.identity.name,
      fingerprint: object.identity.fingerprint,
    };
  }

  /** A plain snapshot of the group. */
  status(): GroupStatus {
    const [membership, scheduler, loggedIn, objects, domain] = [this.#membership, this.#router.scheduler.name, this.#login.loggedIn, this.#catalog.size, this.#domain.checkValue];
    return groupStatus({ membership, scheduler, loggedIn, objects, domain, owed: this.#journal.summary(), observer: this.#observer });
  }

  /** Closes every member and the group. Sessions fail with `ERR_CLOSED` afterwards. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed.signal.aborted) return;
    this.#closed.abort();
    this.#recovery.close();
    await Promise.allSettled(this.#membership.all.map((m) => m.close()));
    this.#login.clear();
    // The last debts reach the disk before close returns.
    await this.#journal.close();
    this.#observer.close();
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
    const member = this.#member(name);
    if (member.serving) return true;
    return this.#recovery.recoverNow(member);
  }

  /**
   * Adds a member online. It is connected, logged in, checked for the group's domain key
   * and given every token object the group holds before it takes any traffic.
   *
   * @returns the new member's name
   * @throws {@link ConfigError} for a bad member configuration or a duplicate name
   * @throws {@link InvalidArgumentError} when the group has a domain and nobody is logged in
   * @throws {@link MemberUnreachableError} when it could not join (it stays, failed; the loop keeps trying)
   */
  async addMember(config: MemberConfig): Promise<string> {
    this.#checkOpen();
    const members = this.#membership.all;
    const resolved = memberConfig(config, members.length, this.#config.members[0]?.threads ?? 2);
    if (this.#membership.byName(resolved.name) !== undefined) throw new ConfigError(`${resolved.path}.name`, `duplicate member name ${JSON.stringify(resolved.name)}`);
    if (members.length >= 64) throw new ConfigError('members', 'at most 64 members');
    // Private objects are visible only to a logged-in user: a member added before the
    // login would silently miss every private key.
    if (!this.#login.loggedIn && this.#domain.checkValue !== undefined) {
      throw new InvalidArgumentError('log in before adding a member: private keys can be copied to it only while logged in');
    }
    const member = createMember(resolved, this.#config, (m, previous, cause) => this.#onMemberState(m, previous, cause));
    this.#membership.add(member);
    if (!(await this.#recovery.join(member))) {
      const state = member.state;
      throw new MemberUnreachableError(member.name, `could not join: ${state.kind === 'failed' ? state.reason : state.kind}`);
    }
    return member.name;
  }

  /** Removes a member online: its sessions and transport are closed and it takes no more traffic. */
  async removeMember(name: string): Promise<void> {
    const member = this.#member(name);
    this.#recovery.forget(member);
    await member.close();
    // What it owed means nothing now, and must not pass to a member later added under its name.
    await this.#journal.forgetMember(name);
  }

  /**
   * Marks a member standby (it is kept current but takes load only when no active member
   * is left) or active again, online.
   */
  setStandby(name: string, standby: boolean): void {
    const member = this.#member(name);
    const role = standby ? 'standby' : 'active';
    if (member.role === role) return;
    // A serving member changes state (which re-elects); a failed one only its role.
    member.setRole(role);
    this.#elect();
  }

  #onMemberState(member: Member, previous: MemberState, cause: Error | undefined): void {
    const current = member.state;
    this.#observer.emit('memberStateChanged', { member: member.name, previous: previous.kind, current, ...(cause ? { reason: cause.message } : {}) });
    if (current.kind === 'failed') {
      if (previous.kind === 'recovering') this.#observer.emit('recoveryFailed', { member: member.name, attempt: previous.attempt, reason: current.reason });
      else if (previous.kind !== 'failed') this.#observer.emit('memberFailed', { member: member.name, reason: current.reason });
      this.#recovery.failed(member, current.attempts);
    }
    if (!member.serving) this.#catalog.forgetMember(member.index);
    this.#elect();
  }

  /** Promotes standby members when no active one serves, demotes them when one is back; re-elects the primary. */
  #elect(): void {
    const changes = this.#membership.elect();
    for (const name of changes.promoted) this.#observer.emit('standbyPromoted', { member: name });
    for (const name of changes.demoted) this.#observer.emit('standbyDemoted', { member: name });
    if (changes.primary) this.#observer.emit('primaryChanged', changes.primary);
  }

  /** The member of that name, in an open group. */
  #member(name: string): Member {
    this.#checkOpen();
    const member = this.#membership.byName(name);
    if (member === undefined) throw new InvalidArgumentError(`no member named ${typeof name === 'string' ? JSON.stringify(name) : typeof name}`);
    return member;
  }

  #checkOpen(): void {
    if (this.#closed.signal.aborted) throw new ClosedError('group');
  }
}

