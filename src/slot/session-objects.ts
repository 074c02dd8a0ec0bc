/**
 * A virtual session's backing sessions: its own sessions on each member, where its
 * session objects are made and live. A session object lives until the session that made
 * it closes, and any session of the same login can use it; so a virtual session may
 * make objects in several backing sessions of one member at once (two calls at once on
 * ONE session crash SoftHSM, so each call holds its backing session alone), and it keeps,
 * per object and member, which backing session made it: that session must stay open
 * while the object lives, and recovery keeps exactly the sessions that still hold one.
 */
import type { VirtualObject } from '../catalog/catalog.js';
import type { Member } from '../member/member.js';
import type { Command, CommandName, CommandResult, Handle } from '../pkcs11/commands.js';
import type { Transport } from '../transport/transport.js';

/**
 * Backing sessions a virtual session opens on one member, at most: as many of its key
 * management calls run at once there. More calls wait for a free one, in order.
 */
export const MAX_BACKING_SESSIONS = 4;

/** One backing session on one member. */
interface Backing {
  readonly session: Promise<Handle>;
  /** The handle once open (spares an await on every call). */
  opened: Handle | undefined;
  /** A call holds it (one at a time: two at once crash SoftHSM). */
  busy: boolean;
}

/** A virtual session's backing sessions on one member, on one transport. */
interface MemberBackings {
  readonly member: Member;
  /** The transport they were opened on: after a reconnect their handles mean nothing (or another session). */
  readonly transport: Transport;
  readonly sessions: Backing[];
  /** Calls waiting for a backing session to be freed (or dropped), first come first served. */
  readonly waiting: (() => void)[];
}

/** The backing sessions of one virtual session, and which of them holds each of its session objects. */
export class BackingSessions {
  readonly #max: number;
  /** By member index. */
  readonly #members = new Map<number, MemberBackings>();
  /** The backing session a created handle was made in (until the object is recorded with {@link own}). */
  readonly #madeIn = new WeakMap<Handle, Backing>();
  /** Per session object, per member index: the backing session that holds it. */
  readonly #holders = new Map<VirtualObject, Map<number, Backing>>();

  constructor(max = MAX_BACKING_SESSIONS) {
    this.#max = max;
  }

  /**
   * Runs one command on a backing session of `member`, alone on it: an idle one, a new
   * one while fewer than the maximum are open, else the next one freed. Handles the
   * command creates are remembered with the session, for {@link own}.
   */
  async exec<N extends CommandName>(member: Member, build: (session: Handle) => Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    let backings = this.#current(member);
    let backing = this.#idle(backings) ?? this.#open(backings);
    while (backing === undefined) {
      await new Promise<void>((wake) => backings.waiting.push(wake));
      backings = this.#current(member);
      backing = this.#idle(backings) ?? this.#open(backings);
    }
    backing.busy = true;
    try {
      const session = backing.opened ?? (await backing.session);
      const result = await member.runOn<N>(build(session));
      this.#remember(result, backing);
      return result;
    } finally {
      this.#release(backings, backing);
    }
  }

  /** Records which backing session holds `object` on each member (made by {@link exec}). */
  own(object: VirtualObject): void {
    let perMember = this.#holders.get(object);
    for (const [index, handle] of object.holders) {
      const backing = this.#madeIn.get(handle);
      if (backing === undefined) continue;
      perMember ??= new Map();
      perMember.set(index, backing);
    }
    if (perMember !== undefined) this.#holders.set(object, perMember);
  }

  /** Forgets a session object (destroyed, or its virtual session closing). */
  forget(object: VirtualObject): void {
    this.#holders.delete(object);
  }

  /**
   * Before session objects are made again on a reconnected `member`: drops its backing
   * sessions that no longer hold a live object (all of them after a new transport: their
   * handles are never sent there, they could name another session). The ones kept (the
   * member came back on the same transport and still has the object) stay open.
   *
   * @param live whether a session object is still alive and held by `member`
   */
  dropStale(member: Member, live: (object: VirtualObject) => boolean): void {
    const backings = this.#members.get(member.index);
    if (backings === undefined) return;
    const keep = new Set<Backing>();
    if (backings.member === member && backings.transport === member.transport) {
      for (const [object, perMember] of this.#holders) {
        const backing = perMember.get(member.index);
        if (backing !== undefined && live(object)) keep.add(backing);
      }
    }
    for (const [object, perMember] of this.#holders) {
      const backing = perMember.get(member.index);
      if (backing !== undefined && !keep.has(backing)) perMember.delete(member.index);
      if (perMember.size === 0) this.#holders.delete(object);
    }
    const kept = backings.sessions.filter((b) => keep.has(b));
    backings.sessions.splice(0, backings.sessions.length, ...kept);
    if (kept.length === 0) this.#members.delete(member.index);
    // Calls waiting here look again (a dropped session is never handed to them).
    for (const wake of backings.waiting.splice(0)) wake();
  }

  /** Backing sessions open now on `member` (for tests and status). */
  openOn(member: Member): number {
    return this.#members.get(member.index)?.sessions.length ?? 0;
  }

  /**
   * Closes every backing session (ending the session objects made in them), on each
   * member still on the transport they were opened on. Call when no call is under way.
   */
  async closeAll(): Promise<void> {
    const all = [...this.#members.values()];
    this.#members.clear();
    this.#holders.clear();
    await Promise.allSettled(
      all.flatMap((o) => {
        // A session of a failed member, or of a transport since replaced, is gone already.
        if (o.member.transport !== o.transport || o.member.state.kind === 'failed' || o.member.state.kind === 'removed') return [];
        return o.sessions.map(async (b) => o.member.runOn<'closeSession'>({ op: 'closeSession', session: await b.session }));
      }),
    );
  }

  /** The member's backing sessions on its current transport; stale ones (it reconnected since) are replaced. */
  #current(member: Member): MemberBackings {
    const current = this.#members.get(member.index);
    if (current !== undefined && current.member === member && current.transport === member.transport) return current;
    const fresh: MemberBackings = { member, transport: member.transport, sessions: [], waiting: [] };
    this.#members.set(member.index, fresh);
    return fresh;
  }

  #idle(backings: MemberBackings): Backing | undefined {
    for (const b of backings.sessions) if (!b.busy) return b;
    return undefined;
  }

  /** Opens one more backing session, unless the maximum is open. */
  #open(backings: MemberBackings): Backing | undefined {
    if (backings.sessions.length >= this.#max) return undefined;
    const backing: Backing = { session: backings.member.openSession(), opened: undefined, busy: false };
    backings.sessions.push(backing);
    backing.session.then(
      (handle) => {
        backing.opened = handle;
      },
      () => {
        // Never opened: forget it (the call that opened it fails with the error).
        const i = backings.sessions.indexOf(backing);
        if (i >= 0) backings.sessions.splice(i, 1);
      },
    );
    return backing;
  }

  /** Frees a backing session and wakes the first waiting call (it takes this one, or opens one if this was dropped). */
  #release(backings: MemberBackings, backing: Backing): void {
    backing.busy = false;
    backings.waiting.shift()?.();
  }

  /** Remembers the backing session of each handle a creating command returned. */
  #remember(result: unknown, backing: Backing): void {
    if (Buffer.isBuffer(result)) this.#madeIn.set(result, backing);
    else if (typeof result === 'object' && result !== null && 'publicKey' in result && 'privateKey' in result) {
      const pair = result as { publicKey: Handle; privateKey: Handle };
      this.#madeIn.set(pair.publicKey, backing);
      this.#madeIn.set(pair.privateKey, backing);
    }
  }
}
