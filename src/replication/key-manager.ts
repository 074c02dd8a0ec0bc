/**
 * Key management: run on the primary, then replicated to every other member before the
 * call returns. Secret and private keys travel wrapped under the domain key
 * (CKM_AES_KEY_WRAP_PAD: wrap on the source, unwrap on each target, all targets in
 * parallel); public keys and data objects by their attributes. A member that cannot be
 * reached is recorded in the journal as owing the replica; it is not used for that
 * object until repaired.
 */
import { trackChange, type Catalog, type VirtualObject } from '../catalog/catalog.js';
import { IDENTITY_ATTRIBUTES, identityFrom, provisionalIdentity, renamedIdentity, type ObjectIdentity } from '../catalog/object-identity.js';
import { outcomeUnknown } from '../errors/classification.js';
import { NoMemberAvailableError, ReplicationError } from '../errors/ha-error.js';
import type { Member } from '../member/member.js';
import { FailoverPolicy } from '../routing/failover-policy.js';
import type { Command, CommandName, CommandResult, Handle, WireAttribute } from '../pkcs11/commands.js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { Pkcs11Attribute } from '../pkcs11/template-codec.js';
import type { Mechanism } from 'pkcs11js';
import type { GroupEventSink } from '../events/group-events.js';
import type { Membership } from '../member/membership.js';
import { findHolders, noHolderError, type HolderResolver } from '../routing/router.js';
import type { Debt, DebtJournal, TentativeEntry } from './journal.js';
import { objectRef } from './journal-store.js';
import { placeReplica, readReplicaSource, type ReplicaSource } from './replica-copy.js';
import { OwedAhead } from './owed-ahead.js';
import { oweRevertsOfUncertainRename } from './uncertain-change.js';
import { shortCreation, shortIf } from '../pkcs11/short-commands.js';
import { asSessionObject, asTokenCopy, creationSearch, KEY_TYPE_OF_MECHANISM, kindOf, StagingRefused, stageable } from './creation-plan.js';
import { isTokenTemplate, replicatedKeyTemplate, type UnextractablePolicy } from './replica-template.js';

/** The virtual session a key management call belongs to. */
export interface SessionScope {
  /**
   * Runs a command on this virtual session's own session on `member`, where its session
   * objects live; calls on one member are serialized (one call per session at a time).
   */
  exec<N extends CommandName>(member: Member, build: (session: Handle) => Extract<Command, { op: N }>): Promise<CommandResult<N>>;
  /** Records a session object of this virtual session (it goes when the session closes). */
  own(object: VirtualObject): void;
}

/** What the key manager needs from its group. */
export interface KeyManagerOptions {
  /** The members, and the primary that key management runs on first. */
  readonly membership: Membership;
  readonly catalog: Catalog;
  readonly journal: DebtJournal;
  /** Each member's handle of the domain key, if the group has a domain. */
  readonly domain: { keyOf(member: Member): Handle | undefined };
  /** Fewest copies a new key may have. */
  readonly minReplicas: number;
  readonly unextractable: UnextractablePolicy;
  /** Whether token objects are staged (see {@link KeyManager.#create}); the group's `keyCreation: 'parallel'`. */
  readonly staging: boolean;
  /** Told when a member owes a replica, deletion or attribute change. */
  readonly events: GroupEventSink;
  /** Finds again the holders of an object that has none (handles are forgotten at logout). */
  readonly discovery: HolderResolver;
  /** Decides whether a failed attempt runs again, where and how often. @default a `new FailoverPolicy()` */
  readonly failover?: FailoverPolicy;
}

/** Runs key management on the primary and replicates the result. */
export class KeyManager {
  readonly #o: KeyManagerOptions;
  readonly #failover: FailoverPolicy;
  /** Per object being created: the members that took a copy, or may have (see #rollback). */
  readonly #mayHold = new WeakMap<VirtualObject, Member[]>();

  constructor(options: KeyManagerOptions) {
    this.#o = options;
    this.#failover = options.failover ?? new FailoverPolicy();
  }

  /** C_GenerateKey on the primary, then replicated. */
  async generateKey(scope: SessionScope, mechanism: Mechanism, template: readonly Pkcs11Attribute[]): Promise<VirtualObject> {
    const t = replicatedKeyTemplate(template, this.#o.unextractable);
    const search = creationSearch(t, { objectClass: pkcs11js.CKO_SECRET_KEY, keyType: KEY_TYPE_OF_MECHANISM.get(mechanism.mechanism) });
    const [object] = await this.#create(scope, [], [isTokenTemplate(t)], [search], stageable(t), async (run, _, made) => [
      await run<'generateKey'>((session) => ({ op: 'generateKey', session, mechanism, template: made(t) })),
    ]);
    return object!;
  }

  /** C_GenerateKeyPair on the primary, then both halves replicated (in parallel). */
  async generateKeyPair(
    scope: SessionScope,
    mechanism: Mechanism,
    publicTemplate: readonly Pkcs11Attribute[],
    privateTemplate: readonly Pkcs11Attribute[],
  ): Promise<{ publicKey: VirtualObject; privateKey: VirtualObject }> {
    const priv = replicatedKeyTemplate(privateTemplate, this.#o.unextractable);
    const keyType = KEY_TYPE_OF_MECHANISM.get(mechanism.mechanism);
    const searches = [
      creationSearch(publicTemplate, { objectClass: pkcs11js.CKO_PUBLIC_KEY, keyType }),
      creationSearch(priv, { objectClass: pkcs11js.CKO_PRIVATE_KEY, keyType }),
    ];
    const tokens = [isTokenTemplate(publicTemplate), isTokenTemplate(priv)];
    const [publicKey, privateKey] = await this.#create(scope, [], tokens, searches, stageable(publicTemplate, priv), async (run, _, made) => {
      const pair = await run<'generateKeyPair'>((session) => ({ op: 'generateKeyPair', session, mechanism, publicTemplate: made(publicTemplate), privateTemplate: made(priv) }));
      return [pair.publicKey, pair.privateKey];
    });
    return { publicKey: publicKey!, privateKey: privateKey! };
  }

  /** C_CreateObject on the primary, then replicated. Key values in the template stay on the primary. */
  async createObject(scope: SessionScope, template: readonly Pkcs11Attribute[]): Promise<VirtualObject> {
    const cls = template.find((a) => a.type === pkcs11js.CKA_CLASS)?.value;
    const t = cls === pkcs11js.CKO_SECRET_KEY || cls === pkcs11js.CKO_PRIVATE_KEY ? replicatedKeyTemplate(template, this.#o.unextractable) : [...template];
    const [object] = await this.#create(scope, [], [isTokenTemplate(t)], [creationSearch(t)], stageable(t), async (run, _, made) => [
      await run<'createObject'>((session) => ({ op: 'createObject', session, template: made(t) })),
    ]);
    return object!;
  }

  /** C_CopyObject on a member holding the source, then the copy replicated. */
  async copyObject(scope: SessionScope, source: VirtualObject, template: readonly Pkcs11Attribute[]): Promise<VirtualObject> {
    const token = template.some((a) => a.type === pkcs11js.CKA_TOKEN) ? isTokenTemplate(template) : source.identity.token;
    // The copy keeps the source's class, key type, label and id unless the template changes them.
    const fromSource = source.identity.search.map((a) => ({ type: a.type, value: a.value }));
    const search = creationSearch([...fromSource.filter((a) => !template.some((b) => b.type === a.type)), ...template]);
    // (Never staged: a source with CKA_DESTROYABLE=false would leave a staged copy behind.)
    const [object] = await this.#create(scope, [source], [token], [search], false, async (run, handles) => [
      await run<'copyObject'>((session) => ({ op: 'copyObject', session, object: handles[0]!, template })),
    ]);
    return object!;
  }

  /** C_UnwrapKey (with the application's key) on a member holding it, then replicated under the domain key. */
  async unwrapKey(scope: SessionScope, mechanism: Mechanism, unwrappingKey: VirtualObject, wrapped: Buffer, template: readonly Pkcs11Attribute[]): Promise<VirtualObject> {
    const t = replicatedKeyTemplate(template, this.#o.unextractable);
    const [object] = await this.#create(scope, [unwrappingKey], [isTokenTemplate(t)], [creationSearch(t)], stageable(t), async (run, handles, made) => [
      await run<'unwrapKey'>((session) => ({ op: 'unwrapKey', session, mechanism, unwrappingKey: handles[0]!, wrapped, template: made(t) })),
    ]);
    return object!;
  }

  /** C_DeriveKey on a member holding the base key, then the result replicated. */
  async deriveKey(scope: SessionScope, mechanism: Mechanism, baseKey: VirtualObject, template: readonly Pkcs11Attribute[]): Promise<VirtualObject> {
    const t = replicatedKeyTemplate(template, this.#o.unextractable);
    const [object] = await this.#create(scope, [baseKey], [isTokenTemplate(t)], [creationSearch(t)], stageable(t), async (run, handles, made) => [
      await run<'deriveKey'>((session) => ({ op: 'deriveKey', session, mechanism, baseKey: handles[0]!, template: made(t) })),
    ]);
    return object!;
  }

  /**
   * Destroys an object on every member: first on one holder (so that a refusal, e.g.
   * CKA_DESTROYABLE=false, reaches the caller with nothing changed), then on the others
   * in parallel. Members not holding it (they may keep a copy from before they failed; a
   * replica they owe is cancelled instead) owe the deletion, recorded before anything is
   * destroyed (owed-ahead.ts); members failing under it owe it too.
   */
  async destroyObject(object: VirtualObject): Promise<void> {
    await this.#ensureHolders([object]);
    const ref = objectRef(object);
    const ahead = await this.#oweAhead(object, { kind: 'destroy', object: ref });
    // A session object's destroy touches no token file: short (see short-commands.ts).
    const short = !object.identity.token;
    // Refused (or no member could): nothing was destroyed, nothing is owed (a withdrawal the store misses is written later).
    const first = await this.#onFirstHolder(object, (m, handle) => m.run<'destroyObject'>((session) => shortIf(short, { op: 'destroyObject', session, object: handle }))).catch((error: unknown) => ahead.withdraw().catch(() => undefined).then(() => Promise.reject(error)));
    // Settled: the object is gone from the catalog even when a deletion owed could not be recorded (ERR_JOURNAL, thrown after).
    const done = await Promise.allSettled(
      this.#others(first).map(async (m) => {
        const handle = object.holders.get(m.index);
        if (handle === undefined || ahead.has(m.name)) return this.#owe(m, { kind: 'destroy', object: ref }, `member is ${m.state.kind}`, ahead);
        try {
          await m.run<'destroyObject'>((session) => shortIf(short, { op: 'destroyObject', session, object: handle }));
        } catch (error) {
          await this.#owe(m, { kind: 'destroy', object: ref }, (error as Error).message);
        }
      }),
    );
    this.#o.catalog.remove(object);
    const unrecorded = done.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (unrecorded !== undefined) throw unrecorded.reason;
  }

  /** Sets attributes on every member holding the object; first one holder, then the rest in parallel (the object is `changing` meanwhile). */
  setAttributes(object: VirtualObject, template: readonly Pkcs11Attribute[]): Promise<void> {
    return trackChange(object, this.#setAttributes(object, template));
  }

  async #setAttributes(object: VirtualObject, template: readonly Pkcs11Attribute[]): Promise<void> {
    await this.#ensureHolders([object]);
    const ref = objectRef(object);
    const ahead = await this.#oweAhead(object, { kind: 'setAttributes', object: ref, template });
    const tried: Member[] = [];
    const first = await this.#onFirstHolder(object, (m, handle) => (tried.push(m), m.run<'setAttributes'>((session) => ({ op: 'setAttributes', session, object: handle, template })))).catch((error: unknown) =>
      ahead.withdraw().catch(() => undefined).then(() => oweRevertsOfUncertainRename(tried, ref, template, (m, d, r) => this.#owe(m, d, r))).then(() => Promise.reject(error)),
    );
    // Renamed at once: a failure from here on must not leave the catalog with a name no member carries.
    const read = (): Promise<ObjectIdentity> => first.run<'getAttributes'>((session) => ({ op: 'getAttributes', session, object: object.holders.get(first.index)!, types: IDENTITY_ATTRIBUTES })).then((a) => ({ ...identityFrom(a), fingerprint: object.identity.fingerprint, ...(object.identity.provisional ? { provisional: true as const } : {}) }));
    this.#o.catalog.reindex(object, renamedIdentity(object.identity, template) ?? (await read()));
    await Promise.all(
      this.#others(first).map(async (m) => {
        const handle = object.holders.get(m.index);
        if (handle === undefined || ahead.has(m.name)) return this.#owe(m, { kind: 'setAttributes', object: ref, template }, 'not serving', ahead);
        try {
          await m.run<'setAttributes'>((session) => ({ op: 'setAttributes', session, object: handle, template }));
        } catch (error) {
          this.#o.catalog.unlink(object, m.index);
          await this.#owe(m, { kind: 'setAttributes', object: ref, template }, (error as Error).message);
        }
      }),
    );
  }

  /** Records, before a change runs, the `debt` of every member of the group not holding `object` (see owed-ahead.ts). */
  #oweAhead(object: VirtualObject, debt: Debt): Promise<OwedAhead> {
    const absent = this.#o.membership.all.filter((m) => m.state.kind !== 'removed' && !object.holders.has(m.index));
    return OwedAhead.record(this.#o.journal, object, absent.map((m) => ({ member: m.name, debt })));
  }

  /**
   * Runs `step` on the first holder; when that member fails under it (as the failover
   * policy decides), on the next one: the failed member no longer holds the object (its
   * links are forgotten) and so owes the change in the fan-out that follows. A stale
   * handle is found again by identity first.
   *
   * @returns the member the step succeeded on
   */
  #onFirstHolder(object: VirtualObject, step: (member: Member, handle: Handle) => Promise<unknown>): Promise<Member> {
    const { catalog } = this.#o;
    return this.#failover.execute<Member, Member>(
      {
        size: this.#o.membership.all.length,
        pick: (run) => this.#holderOf([object], (m) => !run.excludes(m.index)),
        refind: (member) => this.#refind([object], member),
        // It no longer counts as a holder, even if the fault did not fail it.
        excluded: (member) => catalog.unlink(object, member.index),
        none: (cause) => noHolderError([object], this.#o.membership.all, cause),
      },
      async (member) => {
        await step(member, object.holders.get(member.index)!);
        return member;
      },
    );
  }

  /** Members other than `member` that are part of the group (not closed). */
  #others(member: Member): Member[] {
    return this.#o.membership.all.filter((m) => m !== member && m.state.kind !== 'removed');
  }

  /** The primary if it holds all inputs, else the first serving member that does; only members `allowed` says. */
  #holderOf(inputs: readonly VirtualObject[], allowed: (m: Member) => boolean): Member | undefined {
    const holdsAll = (m: Member) => m.serving && allowed(m) && inputs.every((o) => o.holders.has(m.index));
    const primary = this.#o.membership.primary;
    return primary && holdsAll(primary) ? primary : this.#o.membership.all.find(holdsAll);
  }

  /** Records a debt (unless it was owed ahead) and reports it; resolves once the debt is durable (the caller returns only then). */
  #owe(member: Member, debt: Debt, reason: string, ahead?: OwedAhead): Promise<void> {
    const durable = ahead?.has(member.name) ? Promise.resolve() : this.#o.journal.owe(member.name, debt);
    const event = { member: member.name, object: debt.object.handle, reason };
    this.#o.events.emit('replicationOwed', event);
    this.#o.events.emit('replicaMissed', event);
    return durable;
  }

  /**
   * Creates objects on one member and replicates each. `make` runs the creating command
   * through `run`, which uses the virtual session's own session for session objects.
   *
   * Token objects get a tentative entry on the creator before the command runs: if the
   * creator fails under the call, what it may have made is unacknowledged and the entry
   * stays for `removeStrays` when it recovers; the call is then run again on the next
   * primary (nothing was acknowledged yet), so it succeeds while any member can do it.
   *
   * Staging: token objects that other members will copy are first made as SESSION objects
   * on the creator, and then written to the token of every member, the creator's included,
   * all at once. A token write is most of a creation's time in SoftHSM (an object file
   * each); done directly, the creator's writes came first and the replicas' after them,
   * so three members took twice the time of one. Staged, they overlap. A staged object
   * that the creator loses (it fails) vanishes with its sessions: it cannot become a stray.
   */
  async #create(
    scope: SessionScope,
    inputs: readonly VirtualObject[],
    /** Per created object: token (true) or session object. The creating call runs in the session's own session if any is a session object. */
    tokens: readonly boolean[],
    /** Per created object: the search that finds it on a member (see {@link creationSearch}). */
    searches: readonly (readonly WireAttribute[])[],
    /** Whether the objects may be staged (see above); only token objects ever are. */
    mayStage: boolean,
    make: (
      run: <N extends CommandName>(build: (session: Handle) => Extract<Command, { op: N }>) => Promise<CommandResult<N>>,
      inputHandles: Handle[],
      /** Applied to every template of the creating command: makes it a session object when staging. */
      made: (template: readonly Pkcs11Attribute[]) => Pkcs11Attribute[],
    ) => Promise<Handle[]>,
  ): Promise<VirtualObject[]> {
    const serving = this.#o.membership.all.filter((m) => m.serving).length;
    if (serving < this.#o.minReplicas) {
      throw new ReplicationError(`only ${serving} member(s) can take a copy now; minReplicas is ${this.#o.minReplicas}: nothing was created`);
    }
    await this.#ensureHolders(inputs);
    // Session objects die with the creator's session: only token objects can be strays.
    const durable = searches.filter((_, i) => tokens[i] ?? tokens[0]);
    let stage = this.#o.staging && mayStage;
    const run = this.#failover.begin(this.#o.membership.all.length);
    for (;;) {
      const creator = this.#holderOf(inputs, (m) => !run.excludes(m.index));
      if (creator === undefined) throw noHolderError(inputs, this.#o.membership.all, run.lastError);
      const staged = stage && tokens.every((t) => t) && this.#others(creator).some((m) => m.serving);
      const exec = this.#executor(scope, tokens.every((t) => t));
      // Making only session objects (staged ones included) with a fast mechanism is short.
      const sessionOnly = staged || tokens.every((t) => !t);
      const tentative = durable.length > 0 && !staged ? await this.#o.journal.markTentative(creator.name, durable) : undefined;
      const made = staged ? asSessionObject : (template: readonly Pkcs11Attribute[]) => [...template];
      let created: Handle[];
      try {
        created = await make((build) => exec(creator, sessionOnly ? (session) => shortCreation(build(session)) : build), inputs.map((o) => o.holders.get(creator.index)!), made);
      } catch (error) {
        // Nothing was acknowledged, so the failover policy may run the creation again. When
        // the module answered, it made nothing; after a member fault what it made is unknown
        // and the entry stays for removeStrays.
        const next = await run.failed(creator, error, inputs.length > 0);
        if (!outcomeUnknown(error)) this.#clearTentative(creator, tentative);
        if (next === 'throw') throw error;
        if (next === 'exhausted') throw new NoMemberAvailableError('no member could create the object', { cause: error });
        if (next === 'refind') await this.#refind(inputs, creator);
        continue;
      }
      // Replicate every created object in parallel; roll all back if one falls short (#replicate cleans up after itself).
      const results = await Promise.allSettled(created.map((h, i) => this.#replicate(scope, creator, h, tokens[i] ?? tokens[0]!, staged, searches[i])));
      const objects = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure === undefined) {
        this.#clearTentative(creator, tentative);
        // Acknowledged: a member that may hold a copy owes it as a replica, and resync finds it present.
        for (const o of objects) this.#mayHold.delete(o);
        return objects;
      }
      await Promise.all(objects.map((o) => this.#rollback(o)));
      if (failure.reason instanceof StagingRefused && creator.serving) {
        // Staging does not suit this object: make it the way it always could be made.
        stage = false;
        continue; // not a failed attempt: the failover policy is not told
      }
      // A serving creator cleaned up after itself; one that failed may keep what it made (its entry stays).
      if (creator.serving) {
        this.#clearTentative(creator, tentative);
        throw failure.reason;
      }
      // The creator died before its objects could be read: nothing was acknowledged, and the
      // failover policy says whether the next member tries.
      const next = await run.failed(creator, failure.reason instanceof StagingRefused ? failure.reason.cause : failure.reason);
      if (next === 'exhausted') throw new NoMemberAvailableError('no member could create the object', { cause: failure.reason });
      if (next !== 'elsewhere') throw failure.reason;
    }
  }

  /** Finds the inputs again after `member` refused its handle of one as invalid (a stale handle). */
  async #refind(inputs: readonly VirtualObject[], member: Member): Promise<void> {
    for (const o of inputs) {
      this.#o.catalog.unlink(o, member.index);
      await this.#o.discovery.resolve(o);
    }
  }

  #clearTentative(member: Member, entry: TentativeEntry | undefined): void {
    // Not waited for (joins the next write): a stale entry only sends recovery looking for strays.
    if (entry !== undefined) void this.#o.journal.clearTentative(member.name, entry);
  }

  #executor(scope: SessionScope, token: boolean) {
    return <N extends CommandName>(member: Member, build: (session: Handle) => Extract<Command, { op: N }>): Promise<CommandResult<N>> =>
      token ? member.run<N>(build) : scope.exec<N>(member, build);
  }

  /**
   * Copies one object from `source` to every other member (to every member, `source`
   * included, when `handle` is a staged session object: see {@link KeyManager.#create});
   * returns it as a virtual object.
   */
  async #replicate(scope: SessionScope, source: Member, handle: Handle, token: boolean, staged: boolean, search?: readonly WireAttribute[]): Promise<VirtualObject> {
    const targets = staged ? this.#o.membership.all.filter((m) => m.state.kind !== 'removed') : this.#others(source);
    const kind = kindOf(search);
    // A session key with no other member to copy to: its identity comes from its creation
    // template and nothing is read (the two reads of a key pair cost as much as its
    // generation). Its fingerprint stays unknown until another member needs it: a member
    // that joins gets a copy read from this one (VirtualSession's restore), which completes it.
    const alone = targets.length === 0 && !token && kind !== undefined && search !== undefined && this.#o.minReplicas <= 1 ? provisionalIdentity(kind.objectClass, kind.keyType, search, false) : undefined;
    if (alone !== undefined) {
      const object = this.#o.catalog.create(alone);
      this.#o.catalog.link(object, source.index, handle);
      scope.own(object);
      return object;
    }
    const sessionObject = staged || !token;
    const destroySource = () => source.run<'destroyObject'>((session) => shortIf(sessionObject, { op: 'destroyObject', session, object: handle })).catch(() => undefined);
    let copy: ReplicaSource;
    try {
      // With no member to copy to, only the identity is read (the read was most of a session key's creation).
      copy = await readReplicaSource(source, handle, this.#o.domain.keyOf(source), targets.length > 0, { sessionObject, kind, identityOnly: targets.length === 0 });
    } catch (error) {
      await destroySource();
      throw error;
    }
    // A staged object has served its purpose once read and wrapped; it goes while the copies are made.
    const staging = staged ? destroySource() : undefined;
    const { read, wrapped, template } = staged ? asTokenCopy(copy) : copy;
    const { catalog } = this.#o;
    const object = catalog.create(identityFrom(read, wrapped));
    if (!staged) catalog.link(object, source.index, handle);
    const ref = objectRef(object);
    const exec = this.#executor(scope, token);
    /** Members whose copy may exist although they never answered (a member fault during the placement). */
    const uncertain: Member[] = [];
    /** Members that took their copy (and may lose their link if they fail before the end). */
    const took: Member[] = staged ? [] : [source];
    let ownCopyRefused: unknown;
    // Settled, not all: every placement ends before a debt the journal could not record is acted on.
    const placed = await Promise.allSettled(
      targets.map(async (m) => {
        const debt: Debt = { kind: 'replica', object: ref, wrapped, template };
        const domainKey = this.#o.domain.keyOf(m);
        if (!(token ? this.#o.membership.takesCopies(m) : m.serving) || (wrapped !== undefined && domainKey === undefined)) {
          await this.#owe(m, debt, m.serving ? 'no domain key' : `member is ${m.state.kind}`);
          return;
        }
        try {
          catalog.link(object, m.index, await placeReplica(exec, m, domainKey, wrapped, template));
          took.push(m);
        } catch (error) {
          const unknown = outcomeUnknown(error);
          if (unknown) uncertain.push(m);
          else if (staged && m === source) ownCopyRefused = error;
          await this.#owe(m, unknown ? { ...debt, uncertain: true } : debt, (error as Error).message);
        }
      }),
    );
    await staging;
    const unrecorded = placed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (unrecorded !== undefined) {
      // A debt the journal could not record (ERR_JOURNAL): nothing is acknowledged, the object goes again.
      await this.#rollback(object, [...took, ...uncertain]).catch(() => undefined);
      throw unrecorded.reason;
    }
    if (ownCopyRefused !== undefined) {
      // The creator's module refused a copy of what it made itself: the replica template
      // cannot make this object. Undo, and let #create make it primary-first.
      await this.#rollback(object, [...took, ...uncertain]);
      throw new StagingRefused(ownCopyRefused);
    }
    if (object.holders.size < this.#o.minReplicas) {
      await this.#rollback(object, [...took, ...uncertain]);
      // A member that failed while taking its copy may hold one: it owes the copy's removal (status().owed) until it recovers.
      const owing = uncertain.length === 0 ? '' : `; ${uncertain.map((m) => m.name).join(', ')} failed while taking a copy and owe its removal`;
      throw new ReplicationError(`the object reached ${object.holders.size} member(s), fewer than minReplicas ${this.#o.minReplicas}: it was removed again${owing}`);
    }
    this.#mayHold.set(object, [...took, ...uncertain]);
    if (!token) scope.own(object);
    return object;
  }

  /**
   * Removes an object that was not acknowledged, from every member that got it. Members in
   * `mayHold` that are no holder now (they failed while making their copy, or after it, and
   * their links went) owe its deletion (matched by identity: it removes nothing else).
   */
  async #rollback(object: VirtualObject, mayHold: readonly Member[] = this.#mayHold.get(object) ?? []): Promise<void> {
    this.#mayHold.delete(object);
    const uncertain = mayHold.filter((m) => !object.holders.has(m.index) && m.state.kind !== 'removed');
    const ref = objectRef(object);
    const forgotten = this.#o.journal.forgetObject(object.handle);
    // The copies go even when the journal cannot be written (it keeps what it could not write, and writes it later).
    const recorded = await Promise.allSettled([forgotten, ...uncertain.map((m) => this.#owe(m, { kind: 'destroy', object: ref }, 'rollback: its copy may exist'))]);
    const removed = await Promise.allSettled(
      [...object.holders].map(async ([index, handle]) => {
        const member = this.#o.membership.all[index]!;
        try {
          await member.run<'destroyObject'>((session) => shortIf(!object.identity.token, { op: 'destroyObject', session, object: handle }));
        } catch (error) {
          // Not acknowledged and not removed: record it, or the next search would bring it back.
          await this.#owe(member, { kind: 'destroy', object: ref }, `rollback: ${(error as Error).message}`);
        }
      }),
    );
    this.#o.catalog.remove(object);
    const failed = [...recorded, ...removed].find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /**
   * Objects whose holders were forgotten (after a logout) are found again first, never
   * waiting for a change in progress (it may be this very call's). A token object is looked
   * for on every serving member that owes nothing for it: after a logout links come back one
   * member at a time, and a change must reach those members, not be owed by them (the chaos
   * run: renames owed by every member but the one that then failed left a key no holder).
   */
  async #ensureHolders(objects: readonly VirtualObject[]): Promise<void> {
    const { membership, journal, discovery } = this.#o;
    for (const o of objects) if (o.identity.token && membership.all.some((m) => m.serving && !o.holders.has(m.index) && !journal.owes(m.name, o))) await discovery.resolve(o);
    return findHolders(discovery, objects, (i) => membership.at(i)?.serving === true, false);
  }
}
