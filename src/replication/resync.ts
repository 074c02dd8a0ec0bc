/**
 * Resynchronisation: a recovered member settles, in journal order, what it owes before
 * it takes traffic again: replicas it missed (C_UnwrapKey of the stored blob under its
 * own domain key, or C_CreateObject), deletions it missed, attribute changes it missed.
 *
 * Every step is idempotent (a replica already present is settled, not duplicated; a
 * change already applied is applied again harmlessly), and each debt is settled in the
 * journal as soon as it is done (durable a write later, all of them before this returns),
 * so a crash mid-way leaves the rest owed and at most a few done ones again. Nothing
 * is destroyed that cannot be proved to be the recorded object (name and fingerprint),
 * and a deletion is settled only when what is left under its name is provably another object.
 *
 * Session objects are not settled here: they live in the sessions of open virtual
 * sessions, which `VirtualSlot.restoreSessions` rebuilds on the member after this.
 * (A deletion of a session object is settled here: the member's old sessions are gone.)
 */
import type { Catalog } from '../catalog/catalog.js';
import { classifyError } from '../errors/classification.js';
import type { Member } from '../member/member.js';
import type { Handle, WireAttribute } from '../pkcs11/commands.js';
import type { Debt, DebtJournal, ObjectRef } from './journal.js';
import { findOn, outOfSight, proves, type FoundObject } from './member-objects.js';
import { placeReplica, pooled } from './replica-copy.js';

/** What {@link resyncMember} needs. */
export interface ResyncOptions {
  /** The member to repair: reconnected and logged in; usually `recovering` (it is not used for traffic meanwhile). */
  readonly member: Member;
  readonly journal: DebtJournal;
  /** The member's handle of the domain key, read again after the reconnect (handles change). */
  readonly domainKey: Handle | undefined;
  /**
   * When given, a replica made or found is linked to its virtual object (objects of this
   * process, which the member then owes nothing for); the group's scan links the rest.
   */
  readonly catalog?: Catalog;
  /** Told after each debt, settled or not: `done` of `total` (total grows if debts arrive meanwhile). */
  readonly onProgress?: (done: number, total: number) => void;
}

/** A debt that stays owed, and why (never key bytes). */
export interface UnsettledDebt {
  readonly debt: Debt;
  readonly reason: string;
}

/** What {@link resyncMember} did. */
export interface ResyncResult {
  /** Debts looked at. */
  readonly total: number;
  /** Debts settled (removed from the journal). */
  readonly settled: number;
  /** Replicas made. */
  readonly replicated: number;
  /** Replica debts whose object the member already held (settled without a copy). */
  readonly alreadyPresent: number;
  /** Objects destroyed. */
  readonly destroyed: number;
  /** Same-named objects a destroy debt left alone: their fingerprint differs or cannot be proved. */
  readonly spared: number;
  /** Attribute changes applied. */
  readonly updated: number;
  /** Debts still owed. */
  readonly unsettled: readonly UnsettledDebt[];
}

/**
 * Settles everything `member` owes, oldest first. A debt that fails stays owed, and so
 * do later debts about the same object (order matters: a change must not land before the
 * replica it changes). A member fault on the member stops the resync and is rethrown:
 * the member failed again.
 *
 * @example
 * const result = await resyncMember({ member, journal, domainKey, catalog, onProgress: (done, total) => emit('resyncProgress', { member: member.name, done, total }) });
 * if (result.unsettled.length === 0) member.rejoin();
 */
export async function resyncMember(options: ResyncOptions): Promise<ResyncResult> {
  const { member, journal } = options;
  const tried = new Set<Debt>();
  const blocked = new Set<string>();
  const unsettled: UnsettledDebt[] = [];
  const counts = { settled: 0, replicated: 0, alreadyPresent: 0, destroyed: 0, spared: 0, updated: 0 };
  const checks: Promise<unknown>[] = [];
  let done = 0;
  for (;;) {
    // Debts recorded while this runs (the member takes no copies while recovering) are taken too.
    const next = journal.debts(member.name).find((d) => !tried.has(d) && (d.object.token || d.kind === 'destroy'));
    if (next === undefined) break;
    tried.add(next);
    const key = objectKey(next.object);
    if (blocked.has(key)) {
      unsettled.push({ debt: next, reason: 'an earlier debt about this object is still owed' });
    } else if (outOfSight(member, next.object.search)) {
      // Stays owed until the member is logged in (the group's next login, or repair after it).
      blocked.add(key);
      unsettled.push({ debt: next, reason: 'the member is not logged in: the object may be private and out of its sight' });
    } else {
      try {
        const outcome = await settleOne(options, next, counts);
        if (outcome === undefined && next.kind === 'replica' && !journal.debts(member.name).includes(next)) {
          // The object was destroyed while its copy was being placed, and the destroy dropped
          // this debt ("it never got it"): the copy exists now and must not outlive the
          // object. Owe its destruction instead; this loop settles that next.
          await journal.owe(member.name, { kind: 'destroy', object: next.object });
        } else if (outcome === undefined) {
          // Durable by the flush before returning: settlements coalesce into a few writes.
          const settled = journal.settle(member.name, next);
          // In a shared journal the row can be gone: another server removed the object's debts
          // (its creation rolled back). The copy just made must not outlive it.
          if (next.kind === 'replica') checks.push(settled.then((ok) => (ok ? undefined : journal.owe(member.name, { kind: 'destroy', object: next.object }))));
          counts.settled++;
        } else {
          blocked.add(key);
          unsettled.push({ debt: next, reason: outcome });
        }
      } catch (error) {
        // The member failed under us (a member fault fails it): stop, the rest stays owed for the next attempt.
        if (classifyError(error) === 'member') throw error;
        blocked.add(key);
        unsettled.push({ debt: next, reason: (error as Error).message });
      }
    }
    done++;
    const pending = journal.debts(member.name).filter((d) => !tried.has(d) && (d.object.token || d.kind === 'destroy')).length;
    options.onProgress?.(done, done + pending);
  }
  await Promise.all(checks);
  await journal.flush();
  return { total: done, ...counts, unsettled };
}

/**
 * Whether `found` is the copy a member may have made of an object it failed under while
 * copying, the object destroyed since (`leftover`): it carries the copy's name, shows no
 * key material (its material could not be read: half made, or not wrappable), and no other
 * member holds an object of that name in the catalog. Without this, such a copy was kept
 * for ever, its deletion owed (the chaos run).
 */
function isLeftover(o: ResyncOptions, debt: Extract<Debt, { kind: 'destroy' }>, found: FoundObject): boolean {
  if (debt.leftover !== true || o.catalog === undefined || found.identity.name !== debt.object.name || found.identity.fingerprint !== undefined) return false;
  for (const v of o.catalog.objects()) if (v.identity.name === debt.object.name && [...v.holders.keys()].some((i) => i !== o.member.index)) return false;
  return true;
}

type Counts = { settled: number; replicated: number; alreadyPresent: number; destroyed: number; spared: number; updated: number };

/** Settles one debt on the member; returns why not when it cannot (then it stays owed). */
async function settleOne(o: ResyncOptions, debt: Debt, counts: Counts): Promise<string | undefined> {
  const { member, domainKey } = o;
  const ref = debt.object;
  // A session object died with the member's old sessions: nothing left to destroy.
  if (!ref.token) return undefined;
  switch (debt.kind) {
    case 'replica': {
      if (debt.wrapped !== undefined && domainKey === undefined) return 'the member has no domain key to unwrap the replica with';
      const present = (await findOn(member, ref.search, domainKey)).find((f) => proves(ref, f.identity));
      let handle: Handle;
      if (present !== undefined) {
        handle = present.handle;
        counts.alreadyPresent++;
      } else {
        handle = await placeReplica(pooled, member, domainKey, debt.wrapped, debt.template);
        counts.replicated++;
      }
      link(o, debt, handle);
      return undefined;
    }
    case 'destroy': {
      const found = await findOn(member, ref.search, domainKey);
      const proven = found.filter((f) => proves(ref, f.identity) || isLeftover(o, debt, f));
      // Spared: provably another object (both show evidence of one kind, and it differs).
      // Unproven: it may be this very object; the deletion then stays owed.
      const unproven = found.filter((f) => !proven.includes(f) && !otherMaterial(ref.fingerprint, f.identity.fingerprint));
      counts.spared += found.length - proven.length;
      // Objects with no key material are known by name alone: two of them cannot be told apart.
      if (ref.fingerprint === undefined && proven.length > 1) return `${proven.length} objects carry this name and none can be told apart: none destroyed`;
      for (const f of proven) {
        await member.run<'destroyObject'>((session) => ({ op: 'destroyObject', session, object: f.handle }));
        const object = o.catalog?.byMemberHandle(member.index, f.handle);
        if (object !== undefined) o.catalog!.unlink(object, member.index);
        counts.destroyed++;
      }
      if (unproven.length > 0) return `${unproven.length} object(s) carry this name and cannot be proved to be another object: kept, the deletion stays owed`;
      return undefined;
    }
    case 'setAttributes': {
      if (debt.redacted !== undefined && debt.redacted.length > 0) {
        return `the change carries secret attribute values (types ${debt.redacted.map((t) => `0x${t.toString(16)}`).join(', ')}) that are never written to the journal file`;
      }
      let targets = (await findOn(member, ref.search, domainKey)).filter((f) => proves(ref, f.identity));
      const after = applied(ref.search, debt.template);
      if (targets.length === 0 && after !== undefined) {
        // Already applied by an attempt that stopped before it settled: the name has changed.
        targets = (await findOn(member, after, domainKey)).filter((f) => provesMaterial(ref, f));
      }
      // Not on the member at all: nothing to change (a replica debt before this one would have made it).
      for (const f of targets) {
        await member.run<'setAttributes'>((session) => ({ op: 'setAttributes', session, object: f.handle, template: debt.template }));
        counts.updated++;
      }
      return undefined;
    }
  }
}

/** Links a replica to its virtual object when this process knows it and the member owes nothing more for it. */
function link(o: ResyncOptions, debt: Debt, handle: Handle): void {
  const catalog = o.catalog;
  if (catalog === undefined || debt.object.handle < 0) return;
  const object = catalog.get(debt.object.handle);
  if (object === undefined || object.holders.has(o.member.index)) return;
  const owedStill = o.journal.debts(o.member.name).some((d) => d !== debt && d.object.handle === debt.object.handle);
  if (!owedStill) catalog.link(object, o.member.index, handle);
}

/** The search after a change of label or id, or undefined when the change leaves the name alone. */
function applied(search: ObjectRef['search'], template: readonly WireAttribute[]): WireAttribute[] | undefined {
  const renamed = template.filter((a) => search.some((s) => s.type === a.type));
  if (renamed.length === 0) return undefined;
  return search.map((s) => renamed.find((a) => a.type === s.type) ?? s);
}

/** The object after a rename: the search matched its new name, so only the material is left to prove. */
function provesMaterial(ref: ObjectRef, found: FoundObject): boolean {
  return proves({ name: found.identity.name, fingerprint: ref.fingerprint }, found.identity);
}

/** True when two fingerprints of the same kind (`domain-wrap:`, `kcv:`, ...) differ: other key material. */
function otherMaterial(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  return a.slice(0, a.indexOf(':')) === b.slice(0, b.indexOf(':')) && a !== b;
}

/** Debts about one object: by virtual handle in this process, by identity after a restart. */
function objectKey(ref: ObjectRef): string {
  // After a restart a rename changed the name between debts: the material tells the object.
  return ref.handle >= 0 ? `h${ref.handle}` : ref.fingerprint !== undefined ? `f${ref.fingerprint}` : `n${ref.name}`;
}
