/**
 * A change of attributes whose outcome on a member is unknown: the member failed under the
 * command, so it may show the object under its new name or its old one, while the group
 * keeps the old one (the caller was told the change failed). Such a member owes a change
 * back to the old name, looked for under the new name first (and, by resync's rule for a
 * change already applied, under the old one). Without it, a deletion recorded later under
 * the old name finds nothing on that member and is settled while the object stays there
 * (found by the chaos run: a destroyed key back on a member).
 */
import { pkcs11js } from '../native/pkcs11js.js';
import type { WireAttribute } from '../pkcs11/commands.js';
import type { Member } from '../member/member.js';
import type { Debt, ObjectRef } from './journal-store.js';

/** The attributes that make an object's name besides its class, key type and token flag. */
const NAME_PARTS = new Map<number, number>([
  [pkcs11js.CKA_LABEL, 2],
  [pkcs11js.CKA_ID, 3],
]);

/**
 * The debt that puts the old label and id back on a member where a change of them may have
 * been applied, or undefined when the change leaves the name alone (the other attributes
 * of an uncertain change stay as the member has them).
 */
export function revertOfUncertainRename(ref: ObjectRef, template: readonly WireAttribute[]): Debt | undefined {
  // Labels and ids are bytes on the token; a string value is written as its UTF-8 bytes (pkcs11js).
  const changed = template.flatMap((a) =>
    NAME_PARTS.has(a.type) && (Buffer.isBuffer(a.value) || typeof a.value === 'string') ? [{ type: a.type, value: Buffer.isBuffer(a.value) ? a.value : Buffer.from(a.value) }] : [],
  );
  const parts = ref.name.split('/');
  if (changed.length === 0 || parts.length !== 5) return undefined;
  const old = (type: number) => ref.search.find((s) => s.type === type)?.value ?? Buffer.alloc(0);
  const back = changed.map((a) => ({ type: a.type, value: old(a.type) }));
  if (back.every((b, i) => b.value.equals(changed[i]!.value))) return undefined;
  for (const a of changed) parts[NAME_PARTS.get(a.type)!] = a.value.toString('hex');
  const search = ref.search.map((s) => changed.find((a) => a.type === s.type) ?? s);
  // A name attribute the object did not show before now takes part in the search too.
  for (const a of changed) if (!search.some((s) => s.type === a.type)) search.push(a);
  return { kind: 'setAttributes', object: { ...ref, name: parts.join('/'), search }, template: back };
}

/**
 * After a change of attributes failed: each member tried that no longer serves failed under
 * it, so may have applied it, and owes the old name back (see {@link revertOfUncertainRename}).
 */
export async function oweRevertsOfUncertainRename(
  tried: readonly Member[],
  ref: ObjectRef,
  template: readonly WireAttribute[],
  owe: (member: Member, debt: Debt, reason: string) => Promise<void>,
): Promise<void> {
  const revert = revertOfUncertainRename(ref, template);
  if (revert === undefined) return;
  for (const member of tried) if (!member.serving) await owe(member, revert, 'failed under a change of its name: the old name goes back');
}
