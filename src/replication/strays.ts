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
import type { Member } from '../member/member.js';
import type { Handle } from '../pkcs11/commands.js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { DebtJournal, TentativeEntry } from './journal.js';
import { findOn } from './member-objects.js';

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
