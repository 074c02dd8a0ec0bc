/**
 * One multi-part operation (C_EncryptInit ... C_EncryptFinal and the like) of a virtual
 * session: pinned at its Init to one member (the primary, or the least busy holder of the
 * key), on one session of that member leased for its whole life. When that member fails
 * under a step, the {@link FailoverPolicy} takes the operation up on another holder of the
 * key by replaying what it kept (the Init and every part so far, see `replay-buffer.ts`),
 * checks that the output already returned equals the replay's, and runs the step there.
 * An operation that cannot be replayed (past the bound, or a random result: see
 * `replay-rules.ts`) ends with an {@link OperationRestartError}, never a wrong result.
 */
import type { Mechanism } from 'pkcs11js';
import type { VirtualObject } from '../catalog/catalog.js';
import { NoMemberAvailableError, OperationRestartError, Pkcs11Error } from '../errors/ha-error.js';
import type { Member } from '../member/member.js';
import { Secret } from '../member/secret.js';
import type { SessionLease } from '../member/session-lease.js';
import { NOT_NOW } from '../transport/transport.js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { Command, Handle, MultipartCommand } from '../pkcs11/commands.js';
import type { FailoverPolicy, FailoverRun, PinnedExecution, PinnedOperation } from '../routing/failover-policy.js';
import { eligible, type Scheduler } from '../routing/scheduler.js';
import { unseenObject } from '../routing/router.js';
import { CipherPosition } from './cipher-resume.js';
import { ReplayBuffer, type KeptPart, type ReplayBudget } from './replay-buffer.js';
import { mechanismName, unreplayableReason, type OperationKind } from './replay-rules.js';

/**
 * Where a multi-part operation runs: `'primary'` on the group's primary (as the reference
 * does), `'least-busy'` on the least busy member holding the key at its Init.
 */
export type MultipartMode = 'primary' | 'least-busy';

/** What operations need from their group. */
export interface MultipartSettings {
  readonly mode: MultipartMode;
  /** Bytes one operation may keep for a replay (parts and output). */
  readonly operationBytes: number;
  /** Bytes all operations of the group may keep at once. */
  readonly budget: ReplayBudget;
  readonly failover: FailoverPolicy;
  readonly scheduler: Scheduler;
}

/** The group as an operation sees it. */
export interface OperationEnv extends MultipartSettings {
  /** All members, in member order. */
  readonly members: readonly Member[];
  readonly primary: Member | undefined;
  /** Finds again the holders of keys no serving member holds (the router's way: see findHolders). */
  readonly regain?: (objects: readonly VirtualObject[]) => Promise<void>;
}

const CAPITAL: Record<OperationKind, string> = { encrypt: 'Encrypt', decrypt: 'Decrypt', sign: 'Sign', verify: 'Verify', digest: 'Digest' };

/** The PKCS#11 function of a step, for errors: `C_EncryptUpdate`. */
export const functionName = (kind: OperationKind, step: 'Init' | 'Update' | 'Final' | 'Key'): string => `C_${CAPITAL[kind]}${step}`;

/** A PKCS#11 error of the virtual session itself (the caller's fault): no member saw the call. */
export function sessionError(ckr: 'CKR_OPERATION_ACTIVE' | 'CKR_OPERATION_NOT_INITIALIZED' | 'CKR_KEY_HANDLE_INVALID', fn: string): Pkcs11Error {
  return new Pkcs11Error(ckr, pkcs11js[ckr], fn, undefined, 'caller');
}

/** A multi-part operation pinned to one member, replayed elsewhere when it fails. */
export class MultipartOperation implements PinnedOperation<Member> {
  readonly kind: OperationKind;
  readonly #env: OperationEnv;
  readonly #mechanism: Mechanism;
  /** The operation's key and the keys given to C_DigestKey: a member taking it up must hold all. */
  readonly #objects: VirtualObject[];
  readonly #buffer: ReplayBuffer;
  /** For AES-CBC, CBC-PAD, ECB and CTR: where the operation stands, instead of its parts (cipher-resume.ts). */
  readonly #position: CipherPosition | undefined;
  readonly #random: string | undefined;
  #lease!: SessionLease;
  #pinned!: PinnedExecution<Member>;
  /** Input bytes not yet given back as output: room for the Final's output. */
  #pending = 0;
  #tail: Promise<unknown> = Promise.resolve();
  /** Told when the operation ends, however it ends (its session forgets it). */
  readonly #onEnd: ((op: MultipartOperation) => void) | undefined;
  /** Steps queued or running. */
  #queued = 0;
  #ended = false;
  /**
   * The PIN of a context-specific login the token accepted (CKA_ALWAYS_AUTHENTICATE): given
   * again after the Init of a replay elsewhere; dropped when the operation ends. Kept as a
   * {@link Secret}: it never prints (logs, errors, inspection).
   */
  #contextPin: Secret | undefined;
  /** The single-part call is under way (see {@link once}). */
  #single = false;

  private constructor(env: OperationEnv, kind: OperationKind, mechanism: Mechanism, key: VirtualObject | undefined, onEnd: ((op: MultipartOperation) => void) | undefined) {
    this.#env = env;
    this.#onEnd = onEnd;
    this.kind = kind;
    this.#mechanism = mechanism;
    this.#objects = key === undefined ? [] : [key];
    this.#buffer = new ReplayBuffer(env.operationBytes, env.budget);
    this.#random = unreplayableReason(kind, mechanism);
    // A bound of 0 turns every takeover off, this one too.
    this.#position = env.operationBytes > 0 ? CipherPosition.of(kind, mechanism) : undefined;
  }

  /**
   * Runs the Init on the member the mode picks (another holder of the key if that one
   * fails under it) and pins the operation there.
   *
   * @param onEnd told once when the operation ends (a step failed, the Final, {@link end})
   * @throws what the Init threw where it would throw anywhere (the caller's fault)
   * @throws {@link NoMemberAvailableError} when no serving member holds the key
   */
  static async begin(env: OperationEnv, kind: OperationKind, mechanism: Mechanism, key: VirtualObject | undefined, onEnd?: (op: MultipartOperation) => void): Promise<MultipartOperation> {
    const op = new MultipartOperation(env, kind, mechanism, key, onEnd);
    const first = env.mode === 'primary' && env.primary?.serving === true && op.#holds(env.primary) ? env.primary : undefined;
    // Its last linked holder failed under the Init or a step: others may hold the keys unlinked
    // (read when needed: C_DigestKey adds keys after the Init).
    const regain = env.regain === undefined ? undefined : () => (op.#objects.length === 0 ? Promise.resolve() : env.regain!(op.#objects));
    const member = await env.failover.execute<Member, Member>(
      {
        size: env.members.length,
        pick: (run) => (run.failures === 0 && first !== undefined ? first : op.#pick(run)),
        regain,
        none: (cause) => unseenObject(key, env.members, cause) ?? new NoMemberAvailableError(`no serving member can run ${op.name}${key === undefined ? '' : ` with object ${key.handle}`}`, { cause }),
      },
      async (m) => {
        op.#lease = await op.#open(m);
        return m;
      },
    );
    op.#pinned = env.failover.pin(member, op, { size: env.members.length, pick: (run) => op.#pick(run), ...(regain ? { regain } : {}) });
    return op;
  }

  /** What the operation is, for errors: `C_EncryptInit (CKM_AES_CBC)`. */
  get name(): string {
    return `${functionName(this.kind, 'Init')} (${mechanismName(this.#mechanism)})`;
  }

  /** The member the operation runs on now. */
  get member(): Member {
    return this.#pinned.member;
  }

  /** How often the operation was taken up by another member. */
  get replays(): number {
    return this.#pinned.replays;
  }

  /** Why it cannot be replayed now, if it cannot. */
  get unreplayable(): string | undefined {
    // A single-part call with no part before it gives nothing until it ends: any member's answer will do.
    if (this.#random !== undefined && !(this.#single && this.#buffer.parts.length === 0)) return this.#random;
    if (!this.#buffer.complete && this.#position === undefined) return `it went past the replay bound (${this.#env.operationBytes} bytes per operation, ${this.#env.budget.limit} per group)`;
    return undefined;
  }

  /** The replay hook of {@link PinnedOperation}: absent while the operation cannot be replayed. */
  get replay(): ((member: Member) => Promise<void>) | undefined {
    return this.unreplayable === undefined ? (member) => this.#replay(member) : undefined;
  }

  /**
   * Feeds one part; gives the output of encrypt and decrypt (possibly empty).
   *
   * @param out where encrypt and decrypt write their output, as pkcs11js's C_EncryptUpdate
   *   does: the result is then a view of it (a buffer of its own when the output does not fit)
   */
  update(input: Buffer, out?: Buffer): Promise<Buffer | undefined> {
    // In place (PKCS#11 allows it): the token overwrites the input, which the operation
    // still needs afterwards (kept parts, the chaining block of a resume).
    const data = out !== undefined && overlaps(input, out) ? Buffer.from(input) : input;
    // The usual step (none queued, the member's transport calls on this thread now): made
    // at once, with one promise instead of a chain of them per part.
    if (this.#queued === 0 && !this.#ended && data.length > 0) {
      let result: Buffer | undefined | typeof NOT_NOW;
      try {
        result = this.#now(data, out);
      } catch (error) {
        return this.#serial(() => this.#recover(data, out, error));
      }
      if (result !== NOT_NOW) return Promise.resolve(result);
      // The slice was spent (other callers' steps, the event loop's turn): the step waits for
      // the next one in line with them and is then made as above, not through the promise
      // layers of the policy, the member and the transport (about as costly as an AES step).
      let resume!: (step: Promise<Buffer | undefined>) => void;
      const later = new Promise<Buffer | undefined>((resolve) => (resume = resolve));
      if (this.#lease.whenNow(() => resume(this.#resumed(data, out)))) return this.#counted(later);
    }
    return this.#serial(() => this.#slow(data, out));
  }

  /** The step made on the calling thread now, or NOT_NOW; throws what the step threw. */
  #now(data: Buffer, out: Buffer | undefined): Buffer | undefined | typeof NOT_NOW {
    // The caller's buffer, when it has room for all the step can give (input held back so far and this part).
    const room = out !== undefined && out.length >= this.#pending + data.length ? out : undefined;
    const result = this.#lease.runNow((session) => this.#updateCommand(session, { data }), room);
    return result === NOT_NOW ? NOT_NOW : this.#kept(data, result, out);
  }

  /** A step whose slice has come (see update): made now, else the usual way. Never throws. */
  #resumed(data: Buffer, out: Buffer | undefined): Promise<Buffer | undefined> {
    if (this.#ended) return this.#slow(data, out);
    let result: Buffer | undefined | typeof NOT_NOW;
    try {
      result = this.#now(data, out);
    } catch (error) {
      return this.#recover(data, out, error);
    }
    return result === NOT_NOW ? this.#slow(data, out) : Promise.resolve(result);
  }

  /** A step made on the calling thread that failed: the policy decides as for any failed step (take the operation up elsewhere, or end it). */
  async #recover(data: Buffer, out: Buffer | undefined, error: unknown): Promise<Buffer | undefined> {
    let failed = true;
    const again = await this.#step((lease) => {
      if (!failed) return lease.run((session) => this.#updateCommand(session, { data }));
      failed = false;
      return Promise.reject(error as Error);
    }, functionName(this.kind, 'Update'));
    return this.#kept(data, again, out);
  }

  /** A step through the policy, the member and the transport (execute). */
  async #slow(data: Buffer, out: Buffer | undefined): Promise<Buffer | undefined> {
    // An empty part changes nothing; SoftHSM answers CKR_BUFFER_TOO_SMALL to an empty
    // C_DecryptUpdate under CBC-PAD whatever the room (an unsigned underflow).
    if (data.length === 0) {
      if (this.#ended) throw sessionError('CKR_OPERATION_NOT_INITIALIZED', functionName(this.kind, 'Update'));
      return this.kind === 'encrypt' || this.kind === 'decrypt' ? Buffer.alloc(0) : undefined;
    }
    return this.#kept(data, await this.#step((lease) => lease.run((session) => this.#updateCommand(session, { data })), functionName(this.kind, 'Update')), out);
  }

  /**
   * Keeps a part that went through and what it gave; gives its output: in `out` when the
   * caller gave one and it fits (written there by the token, or copied there).
   */
  #kept(data: Buffer, result: unknown, out: Buffer | undefined): Buffer | undefined {
    const output = Buffer.isBuffer(result) ? result : undefined;
    this.#pending += data.length - (output?.length ?? 0);
    // Written into the caller's buffer, which it may reuse: the replay keeps a copy.
    const inOut = output !== undefined && out !== undefined && output.buffer === out.buffer && output.byteOffset === out.byteOffset;
    if (this.#position !== undefined) this.#position.advance(data, output);
    else this.#buffer.keep({ data }, output, inOut);
    if (output === undefined || out === undefined || inOut || output.length > out.length) return output;
    // Made elsewhere (another thread, a member host): ours, and given in `out`.
    output.copy(out);
    return out.subarray(0, output.length);
  }

  /** Feeds a key's value to an open digest (C_DigestKey). */
  digestKey(key: VirtualObject): Promise<void> {
    return this.#serial(async () => {
      if (!this.#objects.includes(key)) this.#objects.push(key);
      await this.#step((lease) => {
        const handle = key.holders.get(this.member.index);
        if (handle === undefined) throw sessionError('CKR_KEY_HANDLE_INVALID', 'C_DigestKey');
        return lease.run((session) => ({ op: 'digestUpdateKey', session, key: handle }));
      }, 'C_DigestKey');
      this.#buffer.keep({ key });
    });
  }

  /** Ends the operation with its result: the last output, the signature or digest, or whether the signature verified. */
  final(signature?: Buffer): Promise<Buffer | boolean> {
    const build = (session: Handle): MultipartCommand => this.#finalCommand(session, signature);
    // Made at once when it can be, as the usual Update (see update).
    if (this.#queued === 0 && !this.#ended) {
      let result: unknown;
      try {
        result = this.#lease.runNow(build);
      } catch (error) {
        return this.#serial(() => this.#finalSlow(build, error));
      }
      if (result !== NOT_NOW) {
        // A wrong signature ends the operation too; the session is closed rather than trusted.
        if (result === false) return this.end(true).then(() => false);
        void this.end(false);
        return Promise.resolve(result as Buffer | boolean);
      }
    }
    return this.#serial(() => this.#finalSlow(build));
  }

  /** The Final through the policy; `failed`: what it threw when made on the calling thread (the policy decides as for an Update). */
  async #finalSlow(build: (session: Handle) => MultipartCommand, failed?: unknown): Promise<Buffer | boolean> {
    let error = failed;
    const result = await this.#step((lease) => {
      if (error === undefined) return lease.run(build);
      const thrown = error;
      error = undefined;
      return Promise.reject(thrown as Error);
    }, functionName(this.kind, 'Final'));
    await this.end(result === false);
    return result as Buffer | boolean;
  }

  /**
   * C_Login(CKU_CONTEXT_SPECIFIC) for this operation, on its member's session (a key with
   * CKA_ALWAYS_AUTHENTICATE). A PIN the token accepts is kept until the operation ends, for
   * a replay elsewhere; a PIN the token refuses (or a key that needs no login) leaves the
   * operation open, as the token does. A member failing under it: taken up elsewhere, as a step.
   */
  authorise(pin: string): Promise<void> {
    return this.#serial(async () => {
      if (this.#ended) throw sessionError('CKR_OPERATION_NOT_INITIALIZED', 'C_Login');
      try {
        await this.#pinned.run(() => this.#lease.run((session) => ({ op: 'contextLogin', session, pin })));
      } catch (error) {
        if (!(error instanceof Pkcs11Error && error.fault !== 'member')) await this.end(true);
        throw error;
      }
      if (this.#ended) throw sessionError('CKR_OPERATION_NOT_INITIALIZED', 'C_Login');
      this.#contextPin = Secret.of(pin);
    });
  }

  /**
   * The single-part call (C_Sign, C_Encrypt, ...) on the operation's session, after its
   * Init and context login: ends the operation with its result.
   */
  once(data: Buffer, signature?: Buffer): Promise<Buffer | boolean> {
    return this.#serial(async () => {
      this.#single = true;
      const result = await this.#step((lease) => lease.run((session) => this.#onceCommand(session, data, signature)), `C_${CAPITAL[this.kind]}`);
      await this.end(result === false);
      return result as Buffer | boolean;
    });
  }

  /**
   * Ends the operation: its session goes back to the pool after a clean Final, else it is
   * closed on its member (which ends what is open in it). Idempotent.
   */
  async end(abort = true): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#contextPin = undefined;
    this.#onEnd?.(this);
    this.#buffer.release();
    if (abort) await this.#lease.abort();
    else this.#lease.release();
  }

  /** Whether `member` holds every key of the operation. */
  #holds(member: Member): boolean {
    return this.#objects.every((o) => o.holders.has(member.index));
  }

  /** The least busy serving holder of the keys that `run` has not excluded. */
  #pick(run: FailoverRun): Member | undefined {
    const candidates = eligible(this.#env.members, (m) => !run.excludes(m.index) && this.#holds(m));
    return candidates.length > 0 ? this.#env.scheduler.pick(candidates) : undefined;
  }

  /** Leases a session of `member` and runs the Init there (with `mechanism` when taken up mid-way). */
  async #open(member: Member, mechanism = this.#mechanism): Promise<SessionLease> {
    const lease = await member.lease();
    try {
      await lease.run((session) => this.#initCommand(session, member, mechanism));
      // A replay: the login the operation had is given again, right after its Init.
      const pin = this.#contextPin;
      if (pin !== undefined) await lease.run((session) => ({ op: 'contextLogin', session, pin: pin.reveal() }));
      return lease;
    } catch (error) {
      await lease.abort();
      throw error;
    }
  }

  /** Takes the operation up on `member`: its Init and every kept part, the output checked (or resumed: see cipher-resume.ts). */
  async #replay(member: Member): Promise<void> {
    const resume = this.#position?.resume();
    if (typeof resume === 'string') throw new OperationRestartError(this.name, member.name, resume);
    const lease = await this.#open(member, resume?.mechanism);
    try {
      if (resume !== undefined) {
        const out = resume.feed.length === 0 ? undefined : await lease.run((session) => this.#updateCommand(session, { data: resume.feed }, member));
        if (!(Buffer.isBuffer(out) ? out : Buffer.alloc(0)).equals(resume.expect)) throw new OperationRestartError(this.name, member.name, 'the member taking it up gave other output than what was already returned');
      }
      const outputs: Buffer[] = [];
      for (const part of resume === undefined ? this.#buffer.parts : []) {
        const out = await lease.run((session) => this.#updateCommand(session, part, member));
        if (Buffer.isBuffer(out)) outputs.push(out);
      }
      if (!Buffer.concat(outputs).equals(this.#buffer.output())) {
        throw new OperationRestartError(this.name, member.name, 'the replay gave other output than what was already returned');
      }
      // Ended (session closed, logout) while the replay ran: its session must not stay held.
      if (this.#ended) throw sessionError('CKR_OPERATION_NOT_INITIALIZED', functionName(this.kind, 'Update'));
    } catch (error) {
      await lease.abort();
      throw error;
    }
    const old = this.#lease;
    this.#lease = lease;
    // The failed member's session: forgotten (its transport is gone) or closed.
    void old.abort();
  }

  /** One step under the policy; any error ends the operation (PKCS#11: an error in Update or Final ends it). */
  async #step<T>(run: (lease: SessionLease) => Promise<T>, fn: string): Promise<T> {
    if (this.#ended) throw sessionError('CKR_OPERATION_NOT_INITIALIZED', fn);
    let result: T;
    try {
      result = await this.#pinned.run(() => run(this.#lease));
    } catch (error) {
      await this.end(true);
      throw error;
    }
    // Ended while the step ran (the session closed, a logout): its answer comes too late.
    if (this.#ended) throw sessionError('CKR_OPERATION_NOT_INITIALIZED', fn);
    return result;
  }

  /** Steps of one operation run one after the other, whatever the caller does. */
  #serial<T>(work: () => Promise<T>): Promise<T> {
    // A caller that awaits each step (the usual one) queues behind nothing.
    if (this.#queued === 0) return this.#counted(work());
    const next = this.#tail.then(work, work);
    return this.#counted(next);
  }

  #counted<T>(running: Promise<T>): Promise<T> {
    this.#queued++;
    const settled = (): void => {
      this.#queued--;
    };
    this.#tail = running.then(settled, settled);
    return running;
  }

  #initCommand(session: Handle, member: Member, mechanism: Mechanism): Command {
    if (this.kind === 'digest') return { op: 'digestInit', session, mechanism };
    const key = this.#objects[0]!.holders.get(member.index)!;
    return { op: `${this.kind}Init`, session, mechanism, key };
  }

  #updateCommand(session: Handle, part: KeptPart, member: Member = this.member): MultipartCommand {
    if ('key' in part) return { op: 'digestUpdateKey', session, key: part.key.holders.get(member.index)! };
    return { op: `${this.kind}Update`, session, data: part.data };
  }

  #onceCommand(session: Handle, data: Buffer, signature: Buffer | undefined): MultipartCommand {
    switch (this.kind) {
      case 'verify':
        return { op: 'verifyOnce', session, data, signature: signature ?? Buffer.alloc(0) };
      case 'digest':
        throw sessionError('CKR_OPERATION_NOT_INITIALIZED', 'C_Digest');
      default:
        return { op: `${this.kind}Once`, session, data };
    }
  }

  #finalCommand(session: Handle, signature: Buffer | undefined): MultipartCommand {
    switch (this.kind) {
      case 'encrypt':
      case 'decrypt':
        return { op: `${this.kind}Final`, session, pending: this.#pending };
      case 'verify':
        return { op: 'verifyFinal', session, signature: signature ?? Buffer.alloc(0) };
      default:
        return { op: `${this.kind}Final`, session };
    }
  }
}

/** Whether two buffers share bytes. */
function overlaps(a: Buffer, b: Buffer): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length;
}
