/**
 * Runs load-balanced commands: filters the members that may serve, lets the scheduler
 * pick, and when the chosen member fails under the command (a member fault), runs the
 * command again on another one. "Run this again elsewhere" is the general mechanism
 * that failover and multi-part replay build on.
 */
import { classifyError, isStaleHandle } from '../errors/classification.js';
import { NoMemberAvailableError } from '../errors/ha-error.js';
import type { Member } from '../member/member.js';
import type { VirtualObject } from '../catalog/catalog.js';
import type { Command, CommandName, CommandResult, Handle } from '../pkcs11/commands.js';
import type { Clock } from '../clock/clock.js';
import { systemClock } from '../clock/clock.js';
import { eligible, type Scheduler } from './scheduler.js';

/** Builds a member's command from one of its sessions and its handle for the object. */
export type CommandBuilder<N extends CommandName> = (session: Handle, memberHandle: Handle) => Extract<Command, { op: N }>;

const NO_HANDLE: Handle = Buffer.alloc(0);

/** Routes stateless commands over the group's members. */
export class Router {
  readonly #members: readonly Member[];
  readonly #scheduler: Scheduler;
  readonly #resolve: (object: VirtualObject, stale?: number) => Promise<void>;
  readonly #clock: Clock;

  /**
   * @param resolve finds again the holders of an object that has none (after a logout
   *   or a member reconnect, members hand out new handles), or whose handle on member
   *   `stale` was refused (that link is dropped first)
   * @param clock times commands for latency-aware schedulers
   */
  constructor(members: readonly Member[], scheduler: Scheduler, resolve: (object: VirtualObject, stale?: number) => Promise<void>, clock: Clock = systemClock) {
    this.#members = members;
    this.#scheduler = scheduler;
    this.#resolve = resolve;
    this.#clock = clock;
  }

  /** The strategy in use. */
  get scheduler(): Scheduler {
    return this.#scheduler;
  }

  /**
   * Runs a command on the least busy member that can serve it, moving it to another
   * member when the chosen one fails. Caller faults and ambiguous errors go straight
   * back to the caller: retrying those elsewhere could only repeat them.
   *
   * @param object the object the command uses; only its holders are candidates
   */
  run<N extends CommandName>(object: VirtualObject | undefined, build: CommandBuilder<N>): Promise<CommandResult<N>> {
    return this.runWith<N>(object === undefined ? [] : [object], (session, handles) => build(session, handles[0] ?? NO_HANDLE));
  }

  /**
   * Like {@link run}, for a command that uses several objects (wrapKey: the wrapping key
   * and the key): only members holding all of them are candidates.
   */
  async runWith<N extends CommandName>(objects: readonly VirtualObject[], build: (session: Handle, memberHandles: Handle[]) => Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    for (const o of objects) if (o.holders.size === 0) await this.#resolve(o);
    let tried: Set<number> | undefined;
    let lastError: unknown;
    let refound = false;
    for (;;) {
      const candidates = eligible(this.#members, (m) => objects.every((o) => o.holders.has(m.index)) && !tried?.has(m.index));
      const member = candidates.length > 0 ? this.#scheduler.pick(candidates) : undefined;
      if (member === undefined) throw this.#noMember(objects[0], lastError);
      const handles = objects.map((o) => o.holders.get(member.index)!);
      const observe = this.#scheduler.observe;
      const start = observe === undefined ? 0 : this.#clock.now();
      try {
        const result = await member.run<N>((session) => build(session, handles));
        if (observe !== undefined) this.#scheduler.observe!(member.index, this.#clock.now() - start, true);
        return result;
      } catch (error) {
        const kind = classifyError(error);
        if (observe !== undefined) this.#scheduler.observe!(member.index, this.#clock.now() - start, kind !== 'member');
        if (!refound && objects.length > 0 && isStaleHandle(error)) {
          // The member's cached handle may be stale: find the objects again once, then retry.
          refound = true;
          for (const o of objects) await this.#resolve(o, member.index);
          continue;
        }
        // An ambiguous code (CKR_GENERAL_ERROR: also SoftHSM's answer to a tampered GCM tag)
        // never fails a member on its own: a probe decides whether the member is sick.
        if (kind === 'ambiguous' && (await member.probe())) throw error;
        if (kind === 'caller') throw error;
        (tried ??= new Set()).add(member.index);
        lastError = error;
      }
    }
  }

  #noMember(object: VirtualObject | undefined, cause: unknown): NoMemberAvailableError {
    const what = object === undefined ? 'the command' : `object ${object.handle}`;
    const serving = this.#members.filter((m) => m.serving).map((m) => m.name);
    return new NoMemberAvailableError(
      `no member can serve ${what}: serving members are [${serving.join(', ')}]` +
        (object === undefined ? '' : `, holders are [${[...object.holders.keys()].map((i) => this.#members[i]?.name).join(', ')}]`),
      { cause },
    );
  }
}
