/**
 * The one virtual slot of a group: where the application opens sessions.
 */
import { ClosedError, NoMemberAvailableError } from '../errors/ha-error.js';
import type { SlotContext } from './slot-context.js';
import { SlotCapabilities, type MechanismLimits, type TokenLimits } from './slot-capabilities.js';
import { VirtualSession } from './virtual-session.js';

/** The virtual slot that stands for all members of a group. */
export class VirtualSlot {
  readonly #context: SlotContext & { readonly capabilities: SlotCapabilities };

  /** @internal Created by `HaGroup.open`. */
  constructor(context: SlotContext) {
    this.#context = context.capabilities ? { ...context, capabilities: context.capabilities } : { ...context, capabilities: new SlotCapabilities(context.membership) };
  }

  /**
   * The mechanisms every serving member supports (their C_GetMechanismList intersected),
   * each with the key sizes that fit every member and the CKF_* flags all of them have.
   * Cached: the members are asked again only when the serving members change.
   *
   * @throws {@link NoMemberAvailableError} when no member serves
   */
  mechanisms(): Promise<ReadonlyMap<number, MechanismLimits>> {
    return this.#context.capabilities.mechanisms();
  }

  /**
   * The token flags and limits that hold on every serving member (C_GetTokenInfo of each,
   * combined). Cached as {@link VirtualSlot.mechanisms}, and asked again after a refused login or a PIN change.
   *
   * @throws {@link NoMemberAvailableError} when no member serves
   */
  tokenLimits(): Promise<TokenLimits> {
    return this.#context.capabilities.token();
  }

  /**
   * Opens a session on the virtual slot.
   *
   * @throws {@link ClosedError} once the group is closed
   */
  openSession(): VirtualSession {
    if (this.#context.closed.aborted) throw new ClosedError('group');
    return new VirtualSession(this.#context);
  }

  /**
   * C_SeedRandom: the seed mixed into every serving member's generator (any of them may
   * give the next random bytes); refused only when every member refuses it.
   */
  async seedRandom(seed: Uint8Array): Promise<void> {
    if (this.#context.closed.aborted) throw new ClosedError('group');
    const data = Buffer.from(seed);
    const serving = this.#context.membership.all.filter((m) => m.serving);
    if (serving.length === 0) throw new NoMemberAvailableError('no member serves to take the seed');
    const results = await Promise.allSettled(serving.map((m) => m.run<'seedRandom'>((session) => ({ op: 'seedRandom', session, seed: data }))));
    const refused = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (refused !== undefined && results.every((r) => r.status === 'rejected')) throw refused.reason;
  }

  /** Sessions open now. */
  get openSessions(): number {
    return this.#context.openSessions.size;
  }
}
