/**
 * The member recovery procedure: what one attempt does to bring a failed member back
 * (reconnect, log in, check its domain key, settle what it owes, restore the session
 * objects of open sessions, find its objects again, and only then rejoin), the repair of a
 * serving member that owes something, and the background loop that schedules attempts.
 */
import type { Catalog } from '../catalog/catalog.js';
import type { ObjectDiscovery } from '../catalog/object-discovery.js';
import type { Clock } from '../clock/clock.js';
import { classifyError, isPinError } from '../errors/classification.js';
import { MemberUnreachableError } from '../errors/ha-error.js';
import type { GroupEventSink } from '../events/group-events.js';
import type { GroupLogin } from '../login/group-login.js';
import type { Member } from '../member/member.js';
import type { MemberState } from '../member/member-state.js';
import type { Membership } from '../member/membership.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { DomainError } from '../replication/domain-key.js';
import type { GroupDomain } from '../replication/group-domain.js';
import type { DebtJournal } from '../replication/journal.js';
import { readReplicaSource } from '../replication/replica-copy.js';
import { resyncMember } from '../replication/resync.js';
import { removeHalfMade, removeStrays } from '../replication/strays.js';
import type { OpenSessions } from './open-sessions.js';
import { RecoveryLoop, type RecoveryPolicy } from './recovery-loop.js';

/** Collaborators and settings of {@link MemberRecovery}. */
export interface MemberRecoveryOptions {
  readonly membership: Membership;
  readonly catalog: Catalog;
  readonly discovery: ObjectDiscovery;
  readonly domain: GroupDomain;
  readonly journal: DebtJournal;
  readonly login: GroupLogin;
  /** The open virtual sessions, whose session objects a recovered member gets again. */
  readonly sessions: OpenSessions;
  readonly events: GroupEventSink;
  readonly policy: RecoveryPolicy;
  readonly clock: Clock;
  /** Aborted when the group closes: no attempt goes on past it. */
  readonly signal: AbortSignal;
}

/** Most rounds of catching up with what happened during an attempt. */
const MAX_CATCH_UP_ROUNDS = 10;

/** Recovers failed members, in the background and on request. */
export class MemberRecovery {
  readonly #o: MemberRecoveryOptions;
  readonly #loop: RecoveryLoop;
  /** Members whose automatic recovery stopped for a reason retrying cannot fix (a refused PIN, another domain key). */
  readonly #manualOnly = new Set<string>();
  /** Members swept for half-made objects since the group opened (see #sweep): a later failure sweeps again in its recovery. */
  readonly #swept = new WeakSet<Member>();
  /** Members added online that have not completed their first synchronisation. */
  readonly #needsFullSync = new Set<Member>();
  /** Members whose first attempt (joining the group) is running: no background attempt meanwhile. */
  readonly #joining = new Set<string>();
  /** Debts and tentative entries the journal refresh already tried to settle; forgotten every 30 rounds (another server may have let go of them). */
  #polled = new WeakSet<object>();
  #rounds = 0;

  constructor(options: MemberRecoveryOptions) {
    this.#o = options;
    this.#loop = new RecoveryLoop({
      ...options.policy,
      clock: options.clock,
      attempt: (name) => this.attempt(name),
      failedAttempts: (name) => {
        const state = options.membership.byName(name)?.state;
        return state?.kind === 'failed' && this.#automatic(name) ? state.attempts : undefined;
      },
    });
    this.#watchJournal();
  }

  /** A member became failed: schedules its next automatic attempt, if it may have one. */
  failed(member: Member, attempts: number): void {
    if (!this.#o.signal.aborted && this.#automatic(member.name)) this.#loop.failed(member.name, attempts);
  }

  /** Whether an automatic attempt of this member is scheduled or running. */
  pending(member: Member): boolean {
    return this.#loop.busy(member.name);
  }

  /** Whether the loop may try this member on its own. */
  #automatic(name: string): boolean {
    return !this.#manualOnly.has(name) && !this.#joining.has(name);
  }

  /**
   * Runs an attempt now (an operator's decision: it may retry what the loop gave up on).
   *
   * @returns true when the member serves afterwards
   */
  async recoverNow(member: Member): Promise<boolean> {
    this.#manualOnly.delete(member.name);
    await this.#loop.run(member.name);
    return member.serving;
  }

  /**
   * First synchronisation of a member added online: every token object the group holds is
   * owed to it first, on this attempt and every later one until one succeeds.
   *
   * @returns true when the member serves afterwards; otherwise the loop keeps trying
   */
  async join(member: Member): Promise<boolean> {
    this.#needsFullSync.add(member);
    this.#joining.add(member.name); // no background attempt before the first one
    try {
      await this.attempt(member.name);
    } finally {
      this.#joining.delete(member.name);
    }
    // A refused PIN or another domain key (manual only now) is not retried in the background.
    const state = member.state;
    if (state.kind === 'failed') this.failed(member, state.attempts);
    return member.serving;
  }

  /** Stops recovering a member that leaves the group. */
  forget(member: Member): void {
    this.#loop.cancel(member.name);
    this.#needsFullSync.delete(member);
    this.#manualOnly.delete(member.name);
    this.#joining.delete(member.name);
  }

  /** Stops every timer (the group is closing). */
  close(): void {
    this.#loop.close();
  }

  /**
   * One recovery attempt. Any failure leaves the member failed (one more attempt
   * counted); the loop schedules the next one.
   */
  async attempt(name: string): Promise<void> {
    const { membership, journal, login, events, signal } = this.#o;
    const member = membership.byName(name);
    if (member === undefined || member.state.kind !== 'failed' || signal.aborted) return;
    membership.catchUp(member, false); // a new attempt removes strays before it takes copies again
    try {
      await member.reconnect();
      await this.#restore(member, this.#needsFullSync.has(member));
      // Replications, deletions and logins that happened while it was being restored: settle
      // them too, then rejoin with no await in between (nothing can slip through).
      // A debt that cannot be settled (e.g. a redacted attribute change) stays owed: the
      // member then serves, but never for that object; rounds stop when one settles nothing.
      let owedBefore = Infinity;
      for (let round = 0; ; round++) {
        if (signal.aborted || (member.state as MemberState).kind !== 'recovering') return;
        const owed = journal.debts(member.name).length;
        if ((owed === 0 || owed >= owedBefore) && !login.outOfStep(member)) break;
        if (round >= MAX_CATCH_UP_ROUNDS) throw new MemberUnreachableError(member.name, `could not catch up with the group in ${MAX_CATCH_UP_ROUNDS} rounds`);
        owedBefore = owed;
        await this.#matchLogin(member);
        await this.#resync(member, false);
        await this.#o.discovery.scanMember(member);
      }
      this.#needsFullSync.delete(member);
      const state = member.state as MemberState;
      if (state.kind !== 'recovering') return;
      member.rejoin();
      events.emit('memberRecovered', { member: name, attempts: state.attempt });
    } catch (error) {
      if ((member.state as MemberState).kind === 'recovering') member.fail(`recovery: ${(error as Error).message}`, error as Error);
    } finally {
      membership.catchUp(member, false);
    }
  }

  /**
   * Settles what every serving member owes (debts read back from the journal when the
   * application restarted), once private objects can be made: after a login.
   */
  async repairOwing(): Promise<void> {
    const owing = this.#o.journal.summary();
    const alone = this.#o.journal.refreshIntervalMs === undefined;
    await Promise.all(
      this.#o.membership.all.map((m) => {
        if (!m.serving) return undefined;
        if (owing[m.name] !== undefined) return this.repair(m);
        // At the first login, a member owing nothing may still keep what a creation left half
        // made when the previous process went down, or when its host was stopped at close.
        return alone && !this.#swept.has(m) ? this.#guarded(m, () => this.#sweep(m)) : undefined;
      }),
    );
  }

  /**
   * Settles what a serving member owes, off the application's path. The member keeps
   * serving meanwhile, but not for the objects it owes (the catalog never links those).
   */
  async repair(member: Member): Promise<void> {
    await this.#guarded(member, async () => {
      // Read back from the journal after a restart: the member may have been killed in a creation.
      if (this.#o.journal.refreshIntervalMs === undefined) await this.#sweep(member);
      await this.#resync(member, false);
      await this.#o.discovery.scanMember(member);
    });
  }

  /** Removes what creations left half made on the member (see removeHalfMade). */
  async #sweep(member: Member): Promise<void> {
    await removeHalfMade(member, this.#o.domain.keyOf(member));
    this.#swept.add(member);
  }

  /** Runs repair work on a serving member; a failure other than a member fault is told as a failed recovery. */
  async #guarded(member: Member, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      // A member fault already failed the member (recovery takes over); anything else
      // leaves the debts owed for the next recovery.
      if (classifyError(error) !== 'member') this.#o.events.emit('recoveryFailed', { member: member.name, attempt: 0, reason: (error as Error).message });
    }
  }

  /** Logs a recovering member in as the group is; a refused PIN stops automatic attempts. */
  async #matchLogin(member: Member): Promise<void> {
    try {
      await this.#o.login.match(member);
    } catch (error) {
      // Retrying a refused PIN could lock the token: stop until someone recovers it by hand.
      if (isPinError(error)) this.#manualOnly.add(member.name);
      throw error;
    }
  }

  /** Brings a reconnected member back in step with the group (it takes no traffic meanwhile). */
  async #restore(member: Member, fullSync: boolean): Promise<void> {
    await this.#matchLogin(member);
    try {
      await this.#o.domain.admit(member);
    } catch (error) {
      if (error instanceof DomainError) this.#manualOnly.add(member.name);
      throw error;
    }
    // What a creation its host was killed in left half made (no name finds it); only when no
    // other process uses the members.
    if (this.#o.journal.refreshIntervalMs === undefined) await this.#sweep(member);
    await this.#resync(member, fullSync);
    await this.#o.discovery.scanMember(member);
  }

  /**
   * Settles what a member owes (replicas, deletions, attribute changes) before it serves.
   * With `fullSync` (a new member) every token object the group holds is owed first.
   */
  async #resync(member: Member, fullSync: boolean): Promise<void> {
    const { membership, journal, catalog, domain, events } = this.#o;
    const domainKey = domain.keyOf(member);
    // Only the holder of the member's claim repairs it: with a journal shared by several
    // servers, whoever claims first; the others skip it (its debts leave them on refresh).
    const claim = await journal.claim(member.name);
    if (claim !== undefined) {
      try {
        const others = membership.all.filter((m) => m.serving && m !== member).map((m) => ({ member: m, domainKey: domain.keyOf(m) }));
        // Strays first: the replica of a creation retried elsewhere then lands on a clean member.
        await removeStrays({ member, domainKey, journal, others });
        if (fullSync) await this.#oweEverything(member);
        // Clean now: new token objects are copied to it directly while it settles its backlog.
        if (member.state.kind === 'recovering') membership.catchUp(member, true);
        await resyncMember({
          member,
          journal,
          domainKey,
          catalog,
          onProgress: (done, total) => events.emit('resyncProgress', { member: member.name, done, total }),
        });
      } finally {
        await claim.release();
      }
    }
    await this.#o.sessions.restoreSessions(member, { domainKey: (m) => domain.keyOf(m) });
  }

  /**
   * A journal shared with other servers is read again every `refreshIntervalMs`: serving
   * members that owe what another server recorded are repaired here (when logged in), and
   * members another server repaired are scanned, so their objects are used here again.
   */
  #watchJournal(): void {
    const { journal, clock, signal } = this.#o;
    const ms = journal.refreshIntervalMs;
    if (ms === undefined || signal.aborted) return;
    const timer = clock.setTimeout(() => {
      signal.removeEventListener('abort', stop);
      void this.#refresh().finally(() => this.#watchJournal());
    }, ms);
    const stop = () => clock.clearTimeout(timer);
    signal.addEventListener('abort', stop, { once: true });
  }

  async #refresh(): Promise<void> {
    const { journal, membership, discovery, login } = this.#o;
    try {
      const repairedElsewhere = await journal.refresh();
      if (this.#o.signal.aborted) return;
      for (const name of repairedElsewhere) {
        const member = membership.byName(name);
        if (member?.serving) await discovery.scanMember(member);
      }
      if (!login.loggedIn) return;
      if (++this.#rounds % 30 === 0) this.#polled = new WeakSet();
      // A debt is tried once per 30 rounds: one that cannot be settled is not retried every round.
      const due = membership.all.filter((m) => m.serving && [...journal.debts(m.name), ...journal.tentatives(m.name)].some((d) => !this.#polled.has(d)));
      for (const m of due) for (const d of [...journal.debts(m.name), ...journal.tentatives(m.name)]) this.#polled.add(d);
      await Promise.all(due.map((m) => this.repair(m)));
    } catch {
      // The journal is unreachable now: the next round tries again. Operations that must
      // record a debt meanwhile fail with ERR_JOURNAL, so nothing goes unrecorded.
    }
  }

  /**
   * A new member owes every token object the group holds: finds them all (on every serving
   * member) and records one replica debt each, read from a holder (keys wrapped under the
   * domain key there).
   */
  async #oweEverything(member: Member): Promise<void> {
    const { membership, journal, catalog, discovery, domain } = this.#o;
    await discovery.findObjects([{ type: pkcs11js.CKA_TOKEN, value: true }]);
    // What the new member already holds (same identity) it does not owe.
    await discovery.scanMember(member);
    for (const object of catalog.objects()) {
      if (!object.identity.token || object.holders.has(member.index)) continue;
      const [index, handle] = object.holders.entries().next().value ?? [];
      const source = index === undefined ? undefined : membership.at(index);
      if (source === undefined || handle === undefined) continue;
      const sourceKey = domain.keyOf(source);
      if (sourceKey === undefined && domain.checkValue === undefined) continue; // no domain: keys cannot travel
      const copy = await readReplicaSource(source, handle, sourceKey, false);
      if (copy.wrapped === undefined && copy.read.some((a) => a.type === pkcs11js.CKA_CLASS && a.value !== undefined && isKeyClass(a.value))) continue;
      const ref = { handle: object.handle, name: object.identity.name, fingerprint: object.identity.fingerprint, search: object.identity.search, token: true };
      // Recorded in memory at once; written together (group commit) by the flush below.
      void journal.owe(member.name, { kind: 'replica', object: ref, wrapped: copy.wrapped, template: copy.template });
    }
    await journal.flush();
  }
}

/** A secret or private key class (CK_ULONG, little-endian): such keys travel only wrapped. */
function isKeyClass(value: Buffer): boolean {
  const cls = Number(value.readBigUInt64LE(0));
  return cls === pkcs11js.CKO_SECRET_KEY || cls === pkcs11js.CKO_PRIVATE_KEY;
}
