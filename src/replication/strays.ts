/**
 * Stray cleanup. A member that failed while it was creating a token object (the primary
 * killed during key generation) may hold an object nobody acknowledged: the call was
 * retried on the next primary, or failed. Key management records a tentative entry in
 * the journal before each creation; on recovery, the objects of the member that match
 * such an entry and that no other member holds are that unacknowledged copy, and go.
 *
 * Proof, never a guess: an object is destroyed only when its fingerprint is known and no
 * serving member shows an object with the same name that has the same fingerprint or
 * cannot show one, and no member owes a replica of it (the group acknowledged it). When
 * that cannot be established (no other member serves, a search fails) nothing is
 * destroyed and the entry stays for the next attempt.
 */
import type { ObjectIdentity } from '../catalog/object-identity.js';
import { isStaleHandle } from '../errors/classification.js';
import { Pkcs11Error } from '../errors/ha-error.js';
import type { Member } from '../member/member.js';
import type { Handle } from '../pkcs11/commands.js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { DebtJournal, TentativeEntry } from './journal.js';
import { findOn, outOfSight } from './member-objects.js';

/** A member to compare with, and its handle of the domain key. */
export interface PeerMember {
  readonly member: Member;
  readonly domainKey: Handle | undefined;
}

/** What {@link removeStrays} needs. */
export interface StrayOptions {
  /** The recovered member (reconnected, logged in; usually `recovering`). */
  readonly member: Member;
  /** Its handle of the domain key, read again after the reconnect. */
  readonly domainKey: Handle | undefined;
  readonly journal: DebtJournal;
  /** The other members; only serving ones are asked. */
  readonly others: readonly PeerMember[];
}

/** What {@link removeStrays} did. */
export interface StrayResult {
  /** Tentative entries looked at. */
  readonly entries: number;
  /** Entries settled (removed from the journal). */
  readonly settled: number;
  /** Stray objects destroyed. */
  readonly removed: number;
  /** Objects that matched an entry and were kept: another member holds them, or it cannot be proved otherwise. */
  readonly kept: number;
  /** Entries left, and why. */
  readonly unsettled: readonly { readonly entry: TentativeEntry; readonly reason: string }[];
}

type Verdict = 'held' | 'stray' | 'unknown';

/**
 * Removes what the member's unacknowledged creations left on it, then settles their
 * tentative entries. Run it on recovery, before {@link resyncMember} (the replica of the
 * retried creation then arrives on a clean member; in the other order it is kept too,
 * being held by the others).
 *
 * @throws what a member fault on `member` threw (it failed again)
 */
export async function removeStrays(options: StrayOptions): Promise<StrayResult> {
  const { member, domainKey, journal } = options;
  const entries = [...journal.tentatives(member.name)];
  const unsettled: { entry: TentativeEntry; reason: string }[] = [];
  let settled = 0;
  let removed = 0;
  let kept = 0;
  for (const entry of entries) {
    const others = options.others.filter((p) => p.member !== member && p.member.serving);
    if (others.length === 0) {
      unsettled.push({ entry, reason: 'no other member serves: nothing can be proved a stray' });
      continue;
    }
    if (entry.searches.some((search) => outOfSight(member, search))) {
      unsettled.push({ entry, reason: 'the member is not logged in: what it made may be private and out of its sight' });
      continue;
    }
    let conclusive = true;
    for (const search of entry.searches) {
      for (const found of await findOn(member, search, domainKey)) {
        const verdict = await heldElsewhere(found.identity, others, journal);
        if (verdict !== 'stray') {
          kept++;
          if (verdict === 'unknown') conclusive = false;
          continue;
        }
        await member.run<'destroyObject'>((session) => ({ op: 'destroyObject', session, object: found.handle }));
        removed++;
      }
    }
    if (conclusive) {
      await journal.clearTentative(member.name, entry);
      settled++;
    } else {
      unsettled.push({ entry, reason: 'an object matching it could not be proved to be held or not held elsewhere' });
    }
  }
  return { entries: entries.length, settled, removed, kept, unsettled };
}

/** Whether another member holds (or owes) an object of this identity. */
async function heldElsewhere(identity: ObjectIdentity, others: readonly PeerMember[], journal: DebtJournal): Promise<Verdict> {
  const keyMaterial = identity.objectClass === pkcs11js.CKO_SECRET_KEY || identity.objectClass === pkcs11js.CKO_PRIVATE_KEY || identity.objectClass === pkcs11js.CKO_PUBLIC_KEY;
  // A key that shows no fingerprint cannot be told from the group's own copy.
  if (keyMaterial && identity.fingerprint === undefined) return 'unknown';
  for (const debts of journal.entries().values()) {
    if (debts.some((d) => d.kind === 'replica' && d.object.name === identity.name && d.object.fingerprint === identity.fingerprint)) return 'held';
  }
  for (const peer of others) {
    let found;
    try {
      found = await findOn(peer.member, identity.search, peer.domainKey);
    } catch {
      // A peer that cannot answer (it may have failed meanwhile) proves nothing either way.
      return 'unknown';
    }
    // Same name and the same fingerprint, or none to compare: it may be this very object.
    if (found.some((f) => f.identity.name === identity.name && (f.identity.fingerprint === identity.fingerprint || f.identity.fingerprint === undefined))) return 'held';
  }
  return 'stray';
}

/** Key classes, and the attributes that hold (or size) their material: all empty in a half-made key. */
const KEY_MATERIAL = new Map<number, readonly number[]>([
  [pkcs11js.CKO_SECRET_KEY, [pkcs11js.CKA_VALUE_LEN]],
  [pkcs11js.CKO_PRIVATE_KEY, [pkcs11js.CKA_EC_PARAMS, pkcs11js.CKA_MODULUS]],
  [pkcs11js.CKO_PUBLIC_KEY, [pkcs11js.CKA_EC_PARAMS, pkcs11js.CKA_MODULUS]],
]);

/**
 * Removes what a creation left HALF MADE on `member` when its host was killed under it.
 * SoftHSM creates a token object's file first, then writes the object's default
 * attributes one write each (CKA_TOKEN=false, empty CKA_LABEL and CKA_ID, no key
 * material), and the template last in one transaction. A kill in between leaves on the
 * token an object that no search by name finds (the tentative entries and debts name the
 * object as it was meant to be), sometimes one with no attributes at all.
 *
 * Only what is provably such a remainder goes: an object that does not say it is a token
 * object, has no label and no id, and either shows no class at all or is a key without
 * material (no value length, EC parameters or modulus). No complete object looks like
 * that, but one being made does: nothing is checked before every command of this process
 * that ran while the member was searched has ended (see below), and call it only
 * when no other process uses the member (a journal of one process; a remote member host
 * still running a command from before a reconnect would count as one).
 *
 * @returns how many objects were removed
 * @throws what a member fault on `member` threw (it failed again)
 */
export async function removeHalfMade(member: Member, domainKey: Handle | undefined): Promise<number> {
  const all = await member.run<'findObjects'>((session) => ({ op: 'findObjects', session, template: [] }));
  const tokens = new Set((await member.run<'findObjects'>((session) => ({ op: 'findObjects', session, template: [{ type: pkcs11js.CKA_TOKEN, value: true }] }))).map((h) => h.toString('hex')));
  // An object being made now looks half made: wait until every command of this process that
  // ran beside the searches has ended. What they made is then complete, and what starts
  // from now on is not among these handles. (Waiting for none to run at all never ended
  // under load: a member that takes catch-up copies, or serves, is seldom idle.)
  await member.drained();
  let removed = 0;
  for (const handle of all) {
    if (tokens.has(handle.toString('hex')) || domainKey?.equals(handle)) continue;
    try {
      if (!(await halfMade(member, handle))) continue;
      await member.run<'destroyObject'>((session) => ({ op: 'destroyObject', session, object: handle }));
      removed++;
    } catch (error) {
      // Destroyed since the search (a session object, e.g. one a replica was made from): nothing to remove.
      if (!isStaleHandle(error)) throw error;
    }
  }
  return removed;
}

/** Whether the object is provably a half-made one (see {@link removeHalfMade}). */
async function halfMade(member: Member, handle: Handle): Promise<boolean> {
  const token = await readOne(member, handle, pkcs11js.CKA_TOKEN);
  const label = await readOne(member, handle, pkcs11js.CKA_LABEL);
  const id = await readOne(member, handle, pkcs11js.CKA_ID);
  if (token?.[0] === 1 || (label !== undefined && label.length > 0) || (id !== undefined && id.length > 0)) return false;
  const cls = await readOne(member, handle, pkcs11js.CKA_CLASS);
  if (cls === undefined || cls.length === 0) return true; // not even a class: nothing was written but the file
  const material = KEY_MATERIAL.get(Number(cls.length >= 8 ? cls.readBigUInt64LE(0) : cls.readUInt32LE(0)));
  if (material === undefined) return false; // not a key: nothing proves it incomplete
  for (const type of material) {
    const value = await readOne(member, handle, type);
    if (value !== undefined && value.some((b) => b !== 0)) return false;
  }
  return true;
}

/** One attribute; undefined when the object lacks it (not valid for its kind, or not written yet: CKR_ATTRIBUTE_VALUE_INVALID in SoftHSM). */
async function readOne(member: Member, handle: Handle, type: number): Promise<Buffer | undefined> {
  try {
    const [read] = await member.run<'getAttributes'>((session) => ({ op: 'getAttributes', session, object: handle, types: [type] }));
    return read?.value;
  } catch (error) {
    if (error instanceof Pkcs11Error && error.rv === pkcs11js.CKR_ATTRIBUTE_VALUE_INVALID) return undefined;
    throw error;
  }
}
