/**
 * Runs load-balanced commands: filters the members that may serve, lets the scheduler
 * pick, and leaves what happens when the chosen member fails under the command to the
 * {@link FailoverPolicy} (find the object again, run it on another member, or throw).
 */
import { classifyError } from '../errors/classification.js';
import { InvalidHandleError, NoMemberAvailableError, type HaError } from '../errors/ha-error.js';
import type { Member } from '../member/member.js';
import type { VirtualObject } from '../catalog/catalog.js';
import type { Command, CommandName, CommandResult, Handle } from '../pkcs11/commands.js';
import type { Clock } from '../clock/clock.js';
import { systemClock } from '../clock/clock.js';
import { FailoverPolicy, type FailoverRun } from './failover-policy.js';
import { eligible, type Scheduler } from './scheduler.js';

/** Builds a member's command from one of its sessions and its handle for the object. */
export type CommandBuilder<N extends CommandName> = (session: Handle, memberHandle: Handle) => Extract<Command, { op: N }>;

const NO_HANDLE: Handle = Buffer.alloc(0);

/** Finds again the holders of an object (the object discovery of the catalog layer). */
export interface HolderResolver {
  /**
   * Finds again the holders of an object that has none (after a logout or a member
   * reconnect, members hand out new handles), or whose handle on member `stale` was
   * refused (that link is dropped first).
   */
  resolve(object: VirtualObject, stale?: number): Promise<void>;
}

/**
 * Finds again the holders of the objects that no serving member holds (links forgotten at
 * a logout or a failure; perhaps only a recovering member's found since). The one place
 * that does it, for the router, multi-part Inits and key management.
 *
 * @param serving whether the member of that index serves now
 * @param waitForChange first let a change of name in progress reach every member (found by
 *   name, the object would be missed meanwhile); false inside that change itself
 */
export async function findHolders(resolver: HolderResolver, objects: readonly VirtualObject[], serving: (index: number) => boolean, waitForChange = true): Promise<void> {
  for (const o of objects) {
    if (servedBy(o, serving)) continue;
    if (waitForChange) await o.changing?.catch(() => undefined);
    await resolver.resolve(o);
  }
}

/** Whether a member that serves holds `object`. */
export function servedBy(object: VirtualObject, serving: (index: number) => boolean): boolean {
  for (const i of object.holders.keys()) if (serving(i)) return true;
  return false;
}

/** Collaborators of a {@link Router}. */
export interface RouterOptions {
  /** The group's members in member order (the array may grow: members added online). */
  readonly members: readonly Member[];
  readonly scheduler: Scheduler;
  readonly discovery: HolderResolver;
  /** Times commands for latency-aware schedulers. @default the system clock */
  readonly clock?: Clock;
  /** Decides whether a failed command runs again, where and how often. @default a default FailoverPolicy */
  readonly failover?: FailoverPolicy;
}

/** Routes stateless commands over the group's members. */
export class Router {
  readonly #members: readonly Member[];
  readonly #scheduler: Scheduler;
  readonly #discovery: HolderResolver;
  readonly #clock: Clock;
  readonly #failover: FailoverPolicy;

  constructor(options: RouterOptions) {
    this.#members = options.members;
    this.#scheduler = options.scheduler;
    this.#discovery = options.discovery;
    this.#clock = options.clock ?? systemClock;
    this.#failover = options.failover ?? new FailoverPolicy();
  }

  /** The strategy in use. */
  get scheduler(): Scheduler {
    return this.#scheduler;
  }

  /**
   * Runs a command on the least busy member that can serve it, moving it to another
   * member when the chosen one fails (as the {@link FailoverPolicy} decides). Caller
   * faults, and ambiguous errors from a member that answers its probe, go straight back
   * to the caller: retrying those elsewhere could only repeat them.
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
    // Awaited only when needed: the hot path picks its member synchronously, as the call is made.
    if (!objects.every((o) => servedBy(o, this.#serving))) await findHolders(this.#discovery, objects, this.#serving);
    return this.#failover.execute<Member, CommandResult<N>>(
      {
        size: this.#members.length,
        pick: (run) => this.#pick(objects, run),
        regain: objects.length === 0 ? undefined : () => findHolders(this.#discovery, objects, this.#serving),
        // The member's cached handle may be stale: find the objects again (its link dropped).
        refind: objects.length === 0 ? undefined : async (member) => {
          for (const o of objects) await this.#discovery.resolve(o, member.index);
        },
        none: (cause) => this.#noMember(objects[0], cause),
      },
      (member) => this.#attempt(member, objects, build),
    );
  }

  /** Whether the member of that index serves now. */
  readonly #serving = (index: number): boolean => this.#members[index]?.serving === true;

  /** The scheduler's pick among the serving holders of every object the run has not excluded. */
  #pick(objects: readonly VirtualObject[], run: FailoverRun): Member | undefined {
    const candidates = eligible(this.#members, (m) => !run.excludes(m.index) && objects.every((o) => o.holders.has(m.index)));
    return candidates.length > 0 ? this.#scheduler.pick(candidates) : undefined;
  }

  /** One attempt on `member`; timed only for a latency-aware scheduler (the hot path adds no promise). */
  #attempt<N extends CommandName>(member: Member, objects: readonly VirtualObject[], build: (session: Handle, memberHandles: Handle[]) => Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    const handles = objects.map((o) => o.holders.get(member.index)!);
    const run = () => member.run<N>((session) => build(session, handles));
    return this.#scheduler.observe === undefined ? run() : this.#timed(member, run);
  }

  async #timed<T>(member: Member, run: () => Promise<T>): Promise<T> {
    const start = this.#clock.now();
    try {
      const result = await run();
      this.#scheduler.observe!(member.index, this.#clock.now() - start, true);
      return result;
    } catch (error) {
      this.#scheduler.observe!(member.index, this.#clock.now() - start, classifyError(error) !== 'member');
      throw error;
    }
  }

  #noMember(object: VirtualObject | undefined, cause: unknown): HaError {
    const unseen = unseenObject(object, this.#members, cause);
    if (unseen !== undefined) return unseen;
    const what = object === undefined ? 'the command' : `object ${object.handle}`;
    const serving = this.#members.filter((m) => m.serving).map((m) => m.name);
    return new NoMemberAvailableError(
      `no member can serve ${what}: serving members are [${serving.join(', ')}]` +
        (object === undefined ? '' : `, holders are [${[...object.holders.keys()].map((i) => this.#members[i]?.name).join(', ')}]`),
      { cause },
    );
  }
}

/** The error for inputs no serving member holds: a wrong handle when no member shows one while all serve ({@link unseenObject}), else ERR_NO_MEMBER. */
export function noHolderError(inputs: readonly VirtualObject[], members: readonly Member[], cause: unknown): HaError {
  for (const o of inputs) {
    const unseen = unseenObject(o, members, cause);
    if (unseen !== undefined) return unseen;
  }
  return new NoMemberAvailableError(`no serving member holds ${inputs.map((o) => `object ${o.handle}`).join(' and ') || 'what the call needs'}`, cause === undefined ? undefined : { cause });
}

/**
 * The error for a command no member could take because none shows its object while every
 * member serves (a private object after a logout, one destroyed behind the group's back):
 * the handle is what is wrong, not the members. Undefined when members are missing or an
 * attempt failed (`cause`): then no member is available.
 */
export function unseenObject(object: VirtualObject | undefined, members: readonly Member[], cause: unknown): InvalidHandleError | undefined {
  if (object === undefined || object.holders.size > 0 || cause !== undefined) return undefined;
  return members.every((m) => m.serving || m.state.kind === 'removed') ? new InvalidHandleError(object.handle) : undefined;
}
