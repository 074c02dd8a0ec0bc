/**
 * A PIN change across the group (C_SetPIN, C_InitPIN): on every member or on none. Tokens
 * with different PINs would split the group at the next login (the verifier's PIN refused
 * by the others fails them), so the change is refused while a member is down, tried on
 * one member first (a wrong old PIN reaches one token only), then made on the others; a
 * member that refuses it or fails under it has the change rolled back on the members that
 * took it. A member whose rollback fails is taken out of service and named in the error.
 * PINs are never in a message.
 */
import { classifyError } from '../errors/classification.js';
import { MemberUnreachableError } from '../errors/ha-error.js';
import type { Member } from '../member/member.js';

/** What changes: the logged-in user's (or SO's) PIN, or the user PIN set by the SO. */
export type PinChange =
  | { readonly kind: 'set'; readonly oldPin: string; readonly newPin: string }
  | {
      readonly kind: 'init';
      readonly pin: string;
      /** The user PIN each member had before, when the group knows it (for a rollback). */
      readonly previous: (member: Member) => string | undefined;
    };

const apply = (m: Member, change: PinChange): Promise<void> =>
  change.kind === 'set'
    ? m.run<'setPin'>((session) => ({ op: 'setPin', session, oldPin: change.oldPin, newPin: change.newPin }))
    : m.run<'initPin'>((session) => ({ op: 'initPin', session, pin: change.pin }));

/** The change undone on `m`, or undefined when the old PIN is not known. */
function undo(m: Member, change: PinChange): Promise<void> | undefined {
  if (change.kind === 'set') return m.run<'setPin'>((session) => ({ op: 'setPin', session, oldPin: change.newPin, newPin: change.oldPin }));
  const previous = change.previous(m);
  return previous === undefined ? undefined : m.run<'initPin'>((session) => ({ op: 'initPin', session, pin: previous }));
}

/**
 * Makes `change` on every member of `members` (the group's members, removed ones left
 * out), or on none.
 *
 * @throws {@link MemberUnreachableError} a member is not serving (nothing changed), or one
 *   failed during the change (the message says where it was rolled back)
 * @throws {@link Pkcs11Error} the first member's refusal (CKR_PIN_INCORRECT, CKR_PIN_LEN_RANGE, ...):
 *   nothing changed; or another member's refusal after the rollback
 */
export async function changePinOnEvery(members: readonly Member[], change: PinChange): Promise<void> {
  const down = members.find((m) => !m.serving);
  if (down !== undefined) {
    throw new MemberUnreachableError(down.name, `is ${down.state.kind}: a PIN change needs every member, so it was made on none (recover or remove the member first)`);
  }
  const [first, ...others] = members;
  if (first === undefined) throw new MemberUnreachableError('(none)', 'the group has no member to change the PIN on');
  // The first member checks the old PIN (and the token's PIN rules) alone.
  await apply(first, change);
  const results = await Promise.allSettled(others.map((m) => apply(m, change)));
  const refused = results.flatMap((r, i) => (r.status === 'rejected' ? [{ member: others[i]!, error: r.reason as Error }] : []));
  if (refused.length === 0) return;
  const changed = [first, ...others.filter((_, i) => results[i]!.status === 'fulfilled')];
  const stuck: string[] = [];
  await Promise.all(
    changed.map(async (m) => {
      try {
        const undone = undo(m, change);
        if (undone === undefined) throw new Error('its previous user PIN is not known to the group');
        await undone;
      } catch (error) {
        stuck.push(m.name);
        m.fail(`its PIN differs from the other members' after a PIN change was refused elsewhere and could not be rolled back here: ${(error as Error).message}`, error as Error);
      }
    }),
  );
  const { member, error } = refused[0]!;
  const rolledBack = changed.map((m) => m.name).filter((n) => !stuck.includes(n));
  // A member that refused as every member would (the caller's mistake) rolled back cleanly: its own answer says it best.
  if (stuck.length === 0 && classifyError(error) === 'caller') throw error;
  const where = [
    rolledBack.length > 0 ? `the change was rolled back on ${rolledBack.join(', ')}` : undefined,
    stuck.length > 0 ? `could not be rolled back on ${stuck.join(', ')} (taken out of service: its PIN differs)` : undefined,
  ].filter((s) => s !== undefined);
  throw new MemberUnreachableError(member.name, `the PIN change failed here (${error.message}); ${where.join('; ')}`, { cause: error });
}
