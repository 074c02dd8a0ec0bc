/**
 * The one virtual slot of a group: where the application opens sessions.
 */
import { ClosedError } from '../errors/ha-error.js';
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

  /** Sessions open now. */
  get openSessions(): number {
    return this.#context.openSessions.size;
  }
}
