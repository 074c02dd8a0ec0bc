/**
 * The one virtual slot of a group: where the application opens sessions.
 */
import { ClosedError } from '../errors/ha-error.js';
import type { SlotContext } from './slot-context.js';
import { VirtualSession } from './virtual-session.js';

/** The virtual slot that stands for all members of a group. */
export class VirtualSlot {
  readonly #context: SlotContext;

  /** @internal Created by `HaGroup.open`. */
  constructor(context: SlotContext) {
    this.#context = context;
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
