/**
 * The failover policy: the one place that decides what happens when a member fails under
 * a command. From the classification table and the named return-code rules beside it
 * (src/errors/) and from the command's attempts so far, it says: give the error back,
 * find the objects again and retry, or run the command on another member; and it bounds
 * how often. The Router (stateless commands), the KeyManager (first holder, creation) and
 * operations pinned to one member (multi-part, replayed elsewhere through a hook) all ask
 * it, so "run it again elsewhere" is written once.
 *
 * The rules, in order:
 * 1. A stale member handle (`isStaleHandle`) is found again, `refinds` times per command,
 *    and the command retried; the member stays a candidate.
 * 2. A caller fault goes back to the caller: it would fail on any member.
 * 3. An ambiguous answer (`isAmbiguousAnswer`: CKR_GENERAL_ERROR, also SoftHSM's answer to
 *    a tampered GCM tag) never fails a member on its own: the member is probed; if it
 *    answers, the error goes back to the caller, else the command moves on. An ambiguous
 *    error that is no answer of the member (a bug, a replication shortfall) goes back.
 * 4. A member fault (or a member that failed its probe) excludes the member for the rest
 *    of the command, which runs on another one, up to `maxAttempts` attempts in all.
 */
import { classifyError } from '../errors/classification.js';
import { InvalidArgumentError, NoMemberAvailableError, OperationRestartError } from '../errors/ha-error.js';
import { isAmbiguousAnswer, isStaleHandle } from '../errors/return-code-rules.js';

/** A member as the policy sees it. */
export interface FailoverMember {
  /** Position in the group's member order. */
  readonly index: number;
  readonly name: string;
  /**
   * Asks the member a cheap question after an ambiguous answer.
   * @returns true when it answered (the ambiguous error was not its fault)
   */
  probe(): Promise<boolean>;
}

/**
 * What to do after an attempt failed:
 * - `throw`: give the error to the caller (it would fail anywhere, or the member is well);
 * - `refind`: the member's handle may be stale: find the objects again and retry, the
 *   member still a candidate;
 * - `elsewhere`: the member failed under the command and is excluded: run it on another;
 * - `exhausted`: as `elsewhere`, but the attempts are used up: no member is left to try.
 */
export type FailoverStep = 'throw' | 'refind' | 'elsewhere' | 'exhausted';

/** Options of a {@link FailoverPolicy}. */
export interface FailoverPolicyOptions {
  /**
   * Most attempts of one command, the first included; a positive integer or Infinity.
   * @default one per member of the group, plus one per refind
   */
  readonly maxAttempts?: number;
  /**
   * How often one command finds its objects again after a member refused a handle as
   * invalid (a stale cached handle), before that answer counts as ambiguous.
   * @default 1
   */
  readonly refinds?: number;
  /**
   * Told each time a command runs again after failing on `member` (`refind`: there, its
   * objects found again; `elsewhere`: on another member), for metrics. @default none
   */
  readonly onRerun?: RerunListener | undefined;
}

/** Told when a command runs again after an attempt failed (see {@link FailoverPolicyOptions.onRerun}). */
export type RerunListener = (member: FailoverMember, step: 'refind' | 'elsewhere', error: unknown) => void;

/**
 * The attempts of one command so far: which members failed under it, how often it failed
 * and was found again, and the last failure. Made by {@link FailoverPolicy.begin}.
 */
export class FailoverRun {
  readonly #limit: number;
  readonly #maxRefinds: number;
  readonly #onRerun: RerunListener | undefined;
  #excluded: Set<number> | undefined;
  #failures = 0;
  #refinds = 0;
  #lastError: unknown;

  /**
   * @param limit most attempts in all
   * @param maxRefinds most refinds
   * @param onRerun told of each rerun
   */
  constructor(limit: number, maxRefinds: number, onRerun?: RerunListener) {
    this.#limit = limit;
    this.#maxRefinds = maxRefinds;
    this.#onRerun = onRerun;
  }

  /** Failed attempts so far. */
  get failures(): number {
    return this.#failures;
  }

  /** Times the command's objects were found again. */
  get refinds(): number {
    return this.#refinds;
  }

  /** The last failure, for the cause of a "no member left" error. */
  get lastError(): unknown {
    return this.#lastError;
  }

  /** Members excluded so far, in the order they failed. */
  get excluded(): readonly number[] {
    return this.#excluded === undefined ? [] : [...this.#excluded];
  }

  /** Whether member `index` failed under this command: a pick must pass over it. */
  excludes(index: number): boolean {
    return this.#excluded?.has(index) ?? false;
  }

  /**
   * Records that the attempt on `member` failed with `error` and decides the next step
   * (the rules are in this module's header). Probes the member after an ambiguous answer.
   *
   * @param canRefind whether the caller can find its objects again (it used any)
   */
  async failed(member: FailoverMember, error: unknown, canRefind = false): Promise<FailoverStep> {
    this.#lastError = error;
    this.#failures++;
    const spent = this.#failures >= this.#limit;
    if (canRefind && this.#refinds < this.#maxRefinds && isStaleHandle(error)) {
      this.#refinds++;
      // No attempt left to retry with: the member's own answer goes back.
      if (!spent) this.#onRerun?.(member, 'refind', error);
      return spent ? 'throw' : 'refind';
    }
    const fault = classifyError(error);
    if (fault === 'caller') return 'throw';
    if (fault === 'ambiguous' && (!isAmbiguousAnswer(error) || (await member.probe()))) return 'throw';
    (this.#excluded ??= new Set()).add(member.index);
    if (!spent) this.#onRerun?.(member, 'elsewhere', error);
    return spent ? 'exhausted' : 'elsewhere';
  }
}

/** Where a command may run, for {@link FailoverPolicy.execute}. */
export interface FailoverTarget<M extends FailoverMember> {
  /** How many members the group has: the default bound on attempts. */
  readonly size: number;
  /** The member for the next attempt, never one `run` excludes; undefined when none is left. */
  pick(run: FailoverRun): M | undefined;
  /**
   * Finds again the objects whose handle `member` refused (drops that link first). Absent
   * when the command uses no object: a refused handle then counts as ambiguous.
   */
  refind?(member: M): Promise<void>;
  /** Told when `member` failed under the command and is excluded (e.g. to stop counting it as a holder). */
  excluded?(member: M, error: unknown): void;
  /**
   * Looks for candidates once more when none is left after a failure: holders the group
   * has not linked yet (links forgotten at a logout, found again only on the member that
   * just failed).
   */
  regain?(): Promise<void>;
  /** The error for "no member is left"; `cause` is the last failure, if any. */
  none(cause: unknown): Error;
}

/**
 * An operation pinned to one member at its Init (a multi-part operation), as the policy
 * sees it.
 */
export interface PinnedOperation<M extends FailoverMember> {
  /** What the operation is, for errors: e.g. `C_DigestUpdate (CKM_SHA256)`. */
  readonly name: string;
  /**
   * Takes the operation up on `member` from what it kept: its Init and every part that
   * succeeded so far (the part that just failed is not kept: the policy runs it again after
   * the replay). Given only for mechanisms whose result does not depend on the member (a
   * digest, an HMAC, a deterministic signature); without it, the operation ends with an
   * {@link OperationRestartError} when its member fails. A replay that fails leaves
   * nothing behind that the operation needs.
   */
  readonly replay?: (member: M) => Promise<void>;
  /** Why the operation has no replay (now), for the {@link OperationRestartError}'s message. */
  readonly unreplayable?: string;
}

/** Where a pinned operation may be taken up, for {@link FailoverPolicy.pin}. */
export interface PinnedTarget<M extends FailoverMember> {
  /** How many members the group has: the default bound on attempts of one step. */
  readonly size: number;
  /** Another member that can take the operation up (holds its key), never one `run` excludes. */
  pick(run: FailoverRun): M | undefined;
  /** As {@link FailoverTarget.regain}: looks once for holders not linked, when `pick` finds none. */
  regain?(): Promise<void>;
}

/**
 * A pinned operation under the policy: each step runs on the operation's member; when that
 * member fails under a step, the operation is replayed on another member and the step run
 * there, or it ends with a typed error.
 *
 * @example
 * const op = policy.pin(primary, { name: 'C_DigestUpdate (CKM_SHA256)', replay: (m) => reInit(m, parts) }, target);
 * await op.run((m) => m.run((session) => ({ op: 'digestUpdate', session, data })));
 * parts.push(data); // kept only once the step succeeded
 */
export class PinnedExecution<M extends FailoverMember> {
  readonly #policy: FailoverPolicy;
  readonly #operation: PinnedOperation<M>;
  readonly #target: PinnedTarget<M>;
  #member: M;
  #replays = 0;

  constructor(policy: FailoverPolicy, member: M, operation: PinnedOperation<M>, target: PinnedTarget<M>) {
    this.#policy = policy;
    this.#member = member;
    this.#operation = operation;
    this.#target = target;
  }

  /** The member the operation runs on now. */
  get member(): M {
    return this.#member;
  }

  /** How often the operation was taken up on another member. */
  get replays(): number {
    return this.#replays;
  }

  /**
   * Runs one step of the operation on its member; when the member fails under it, takes
   * the operation up elsewhere (see {@link PinnedOperation.replay}) and runs the step there.
   *
   * @throws the step's own error when the policy gives it back (a caller fault; an
   *   ambiguous answer from a member that is well)
   * @throws {@link OperationRestartError} when the member failed and the operation has no
   *   replay, or the member chosen to take it up refused to
   * @throws {@link NoMemberAvailableError} when no member is left to take it up
   */
  async run<T>(step: (member: M) => Promise<T>): Promise<T> {
    // The common case first, with nothing allocated: a step per part of a stream.
    try {
      return await step(this.#member);
    } catch (error) {
      const run = this.#policy.begin(this.#target.size);
      const next = await run.failed(this.#member, error);
      if (next === 'throw') throw error;
      await this.#takeUp(run, next, error);
      return this.#retry(run, step);
    }
  }

  /** Runs the step again after the operation moved, as often as the policy allows. */
  async #retry<T>(run: FailoverRun, step: (member: M) => Promise<T>): Promise<T> {
    for (;;) {
      let failure: unknown;
      try {
        return await step(this.#member);
      } catch (error) {
        failure = error;
      }
      const next = await run.failed(this.#member, failure);
      if (next === 'throw') throw failure;
      await this.#takeUp(run, next, failure);
    }
  }

  /** Moves the operation to another member by its replay, or throws. */
  async #takeUp(run: FailoverRun, step: FailoverStep, cause: unknown): Promise<void> {
    const { name, replay, unreplayable } = this.#operation;
    const from = this.#member;
    if (replay === undefined) {
      throw new OperationRestartError(name, from.name, `its member failed, and ${unreplayable ?? 'its result depends on the member it began on'}`, { cause });
    }
    let regained = this.#target.regain === undefined;
    for (;;) {
      let member = step === 'exhausted' ? undefined : this.#target.pick(run);
      if (member === undefined && step !== 'exhausted' && !regained) {
        regained = true;
        await this.#target.regain!();
        member = this.#target.pick(run);
      }
      if (member === undefined) throw new NoMemberAvailableError(`no member can take up ${name} from member ${from.name}`, { cause: run.lastError });
      try {
        await replay(member);
        this.#member = member;
        this.#replays++;
        return;
      } catch (error) {
        step = await run.failed(member, error);
        if (step === 'throw') throw new OperationRestartError(name, from.name, `its member failed, and member ${member.name} could not take it up`, { cause: error });
      }
    }
  }
}

function checkCount(name: string, value: number | undefined, min: number): void {
  if (value === undefined) return;
  if (value === Infinity && name === 'maxAttempts') return;
  if (!Number.isInteger(value) || value < min) {
    throw new InvalidArgumentError(`failover ${name} must be an integer >= ${min}${name === 'maxAttempts' ? ' or Infinity' : ''}, got ${String(value)}`);
  }
}

/**
 * Decides, for every command that runs on a member, whether a failed attempt is retried,
 * on which member and how often. Stateless between commands: one policy serves a group.
 *
 * @example
 * const policy = new FailoverPolicy();
 * const result = await policy.execute(
 *   { size: members.length, pick: (run) => scheduler.pick(eligible(members, (m) => !run.excludes(m.index))), none: (cause) => new NoMemberAvailableError('none left', { cause }) },
 *   (member) => member.run(build),
 * );
 */
export class FailoverPolicy {
  readonly #maxAttempts: number | undefined;
  readonly #refinds: number;
  readonly #onRerun: RerunListener | undefined;

  /** @throws {@link InvalidArgumentError} for a bad option, echoing its value */
  constructor(options: FailoverPolicyOptions = {}) {
    checkCount('maxAttempts', options.maxAttempts, 1);
    checkCount('refinds', options.refinds, 0);
    this.#maxAttempts = options.maxAttempts;
    this.#refinds = options.refinds ?? 1;
    this.#onRerun = options.onRerun;
  }

  /**
   * Starts the history of one command, for a caller that runs its own attempt loop (key
   * creation, whose attempts do more than one command).
   *
   * @param size how many members the group has (the default bound on attempts)
   */
  begin(size: number): FailoverRun {
    return new FailoverRun(this.#maxAttempts ?? size + this.#refinds, this.#refinds, this.#onRerun);
  }

  /**
   * Runs `attempt` on the member `target` picks; after a failure, finds the objects again,
   * moves to another member, or throws, as {@link FailoverRun.failed} decides.
   *
   * @throws the attempt's own error when the policy gives it back
   * @throws `target.none(cause)` when no member is left
   */
  async execute<M extends FailoverMember, T>(target: FailoverTarget<M>, attempt: (member: M) => Promise<T>): Promise<T> {
    const run = this.begin(target.size);
    let regained = target.regain === undefined;
    for (;;) {
      let member = target.pick(run);
      if (member === undefined && !regained && run.lastError !== undefined) {
        regained = true;
        await target.regain!();
        member = target.pick(run);
      }
      if (member === undefined) throw target.none(run.lastError);
      try {
        return await attempt(member);
      } catch (error) {
        const step = await run.failed(member, error, target.refind !== undefined);
        if (step === 'throw') throw error;
        if (step === 'refind') {
          await target.refind!(member);
          continue;
        }
        target.excluded?.(member, error);
        if (step === 'exhausted') throw target.none(error);
      }
    }
  }

  /**
   * Serves an operation pinned to `member` (chosen at its Init): see {@link PinnedExecution}.
   */
  pin<M extends FailoverMember>(member: M, operation: PinnedOperation<M>, target: PinnedTarget<M>): PinnedExecution<M> {
    return new PinnedExecution(this, member, operation, target);
  }
}
