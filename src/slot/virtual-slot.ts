/**
 * The one virtual slot of a group: where the application opens sessions. It keeps the
 * open sessions, so that recovery can give a reconnected member their session objects.
 */
import type { Member } from '../member/member.js';
import type { SlotContext } from './slot-context.js';
import { VirtualSession, type SessionRestoreOptions } from './virtual-session.js';

/** What restoring the open sessions on a recovered member did. */
export interface SlotRestoreResult {
  /** Open sessions looked at. */
  readonly sessions: number;
  /** Session objects re-created on the member. */
  readonly restored: number;
  /** Session objects that could not be (virtual handle and why); the member is not used for them. */
  readonly failed: readonly { readonly object: number; readonly reason: string }[];
}

/** The virtual slot that stands for all members of a group. */
export class VirtualSlot {
  readonly #context: SlotContext;
  readonly #sessions = new Set<VirtualSession>();

  /** @internal Created by `HaGroup.open`. */
  constructor(context: SlotContext) {
    this.#context = context;
  }

  /** Opens a session on the virtual slot. */
  openSession(): VirtualSession {
    this.#context.checkOpen();
    const session: VirtualSession = new VirtualSession(this.#context, () => this.#sessions.delete(session));
    this.#sessions.add(session);
    return session;
  }

  /** Sessions open now. */
  get openSessions(): number {
    return this.#sessions.size;
  }

  /** @internal The group as its sessions see it (recovery wiring and tests). */
  get context(): SlotContext {
    return this.#context;
  }

  /**
   * @internal Recovery: re-creates the session objects of every open session on a
   * reconnected member (see `VirtualSession.restoreMember`), one session after another.
   * Call it after `resyncMember`, while the member is still `recovering`.
   *
   * @throws what a member fault on `member` threw (it failed again)
   */
  async restoreSessions(member: Member, options: SessionRestoreOptions): Promise<SlotRestoreResult> {
    const sessions = [...this.#sessions];
    let restored = 0;
    const failed: { object: number; reason: string }[] = [];
    for (const session of sessions) {
      const result = await session.restoreMember(member, options);
      restored += result.restored;
      failed.push(...result.failed);
    }
    return { sessions: sessions.length, restored, failed };
  }
}
