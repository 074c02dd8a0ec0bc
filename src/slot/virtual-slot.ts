/**
 * The one virtual slot of a group: where the application opens sessions.
 */
import type { SlotContext } from './slot-context.js';
import { VirtualSession } from './virtual-session.js';

/** The virtual slot that stands for all members of a group. */
export class VirtualSlot {
  readonly #context: SlotContext;

  /** @internal Created by `HaGroup.open`. */
  constructor(context: SlotContext) {
    this.#context = context;
  }

  /** Opens a session on the virtual slot. */
  openSession(): VirtualSession {
    this.#context.checkOpen();
    return new VirtualSession(this.#context);
  }
}
