/**
 * The open virtual sessions as recovery sees them: each can re-create its session objects
 * on a reconnected member. Sessions register here when they open (the slot layer is above
 * recovery, so it is handed this registry rather than recovery asking the slot).
 */
import type { Member } from '../member/member.js';
import type { Handle } from '../pkcs11/commands.js';

/** What restoring session objects on a recovered member needs. */
export interface SessionRestoreOptions {
  /** Each member's handle of the domain key (the recovered member's read again after its reconnect). */
  readonly domainKey: (member: Member) => Handle | undefined;
  /** Told after each session object: `done` of `total`. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** What restoring one session's objects did. */
export interface SessionRestoreResult {
  /** Session objects re-created on the member. */
  readonly restored: number;
  /** Session objects that could not be (virtual handle and why); the member is not used for them. */
  readonly failed: readonly { readonly object: number; readonly reason: string }[];
}

/** What restoring every open session's objects did. */
export interface OpenSessionsRestoreResult extends SessionRestoreResult {
  /** Open sessions looked at. */
  readonly sessions: number;
}

/** One open session's part in recovery. */
export interface SessionObjectsRestorer {
  /**
   * Re-creates the session's live session objects on `member` (after its debts are
   * settled, before it takes traffic).
   *
   * @throws what a member fault on `member` threw (it failed again)
   */
  restore(member: Member, options: SessionRestoreOptions): Promise<SessionRestoreResult>;
}

/** The open sessions, for recovery. */
export class OpenSessions {
  readonly #sessions = new Set<SessionObjectsRestorer>();

  /** Registers an open session; the returned function unregisters it. */
  add(session: SessionObjectsRestorer): () => void {
    this.#sessions.add(session);
    return () => {
      this.#sessions.delete(session);
    };
  }

  /** Open sessions now. */
  get size(): number {
    return this.#sessions.size;
  }

  /**
   * Re-creates every open session's session objects on a recovered member, one session
   * after another.
   *
   * @throws what a member fault on `member` threw (it failed again)
   */
  async restoreSessions(member: Member, options: SessionRestoreOptions): Promise<OpenSessionsRestoreResult> {
    const sessions = [...this.#sessions];
    let restored = 0;
    const failed: { object: number; reason: string }[] = [];
    for (const session of sessions) {
      const result = await session.restore(member, options);
      restored += result.restored;
      failed.push(...result.failed);
    }
    return { sessions: sessions.length, restored, failed };
  }
}
