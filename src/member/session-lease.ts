/**
 * A pooled session held by one caller across several commands: the steps of a multi-part
 * operation, which PKCS#11 keeps in the session its Init ran on. Made by `Member.lease()`.
 * Exactly one step runs at a time (two calls on one SoftHSM session at once crash it). The
 * lease ends by {@link SessionLease.release} after the operation finished cleanly, or by
 * {@link SessionLease.abort}, which closes the session rather than hand it back with an
 * operation still open in it (a later Init there would fail with CKR_OPERATION_ACTIVE).
 */
import { classifyError } from '../errors/classification.js';
import { ClosedError, InvalidArgumentError } from '../errors/ha-error.js';
import type { Command, CommandName, CommandResult, Handle } from '../pkcs11/commands.js';
import { NOT_NOW, type Transport } from '../transport/transport.js';

/** Where a lease's session came from and goes back to. */
export interface LeasePool {
  release(session: Handle): void;
  discard(session: Handle): void;
  /** Closes `session` once a replacement is open (never the token's last session: that logs out). */
  replace(session: Handle): Promise<void>;
}

/** Runs one command on the member through `transport` (counted, timed, typed). */
export type LeaseStep = (command: Command, transport: Transport) => Promise<unknown>;

/** Runs one command on the member through `transport` synchronously, or gives {@link NOT_NOW} (see `Transport.runNow`, and its `output`). */
export type LeaseStepNow = (command: Command, transport: Transport, output?: Buffer) => unknown;

/** One session of a member, held for a multi-part operation. */
export class SessionLease {
  /** The member's name, for errors. */
  readonly member: string;
  /** The module session the operation lives in. */
  readonly session: Handle;
  readonly #pool: LeasePool;
  readonly #transport: Transport;
  readonly #step: LeaseStep;
  readonly #stepNow: LeaseStepNow | undefined;
  #ended = false;
  /** The member failed under a step: its session is gone with its transport. */
  #broken = false;
  #running: Promise<unknown> | undefined;

  /** @internal Made by `Member.lease()`. */
  constructor(member: string, session: Handle, pool: LeasePool, transport: Transport, step: LeaseStep, stepNow?: LeaseStepNow) {
    this.member = member;
    this.session = session;
    this.#pool = pool;
    this.#transport = transport;
    this.#step = step;
    this.#stepNow = transport.runNow === undefined ? undefined : stepNow;
  }

  /** False once released or aborted. */
  get held(): boolean {
    return !this.#ended;
  }

  /**
   * Runs one step on the leased session. A member fault fails the member (as `Member.run`)
   * and breaks the lease: {@link abort} then only forgets the session.
   *
   * @throws {@link ClosedError} once the lease ended
   * @throws {@link InvalidArgumentError} while another step runs
   */
  async run<N extends CommandName>(build: (session: Handle) => Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    if (this.#ended) throw new ClosedError(`session lease on member ${this.member}`);
    if (this.#running !== undefined) throw new InvalidArgumentError(`a step is already running on the leased session of member ${this.member}`);
    const running = this.#step(build(this.session), this.#transport);
    this.#running = running;
    try {
      return (await running) as CommandResult<N>;
    } catch (error) {
      if (classifyError(error) === 'member') this.#broken = true;
      throw error;
    } finally {
      this.#running = undefined;
    }
  }

  /**
   * Runs one step right now on the calling thread when the member's transport would make
   * that call on it anyway (see `Transport.runNow`): the same step as {@link run}, without
   * its promises. Gives {@link NOT_NOW} when it cannot (then use {@link run}, which also
   * reports a lease that ended or is busy).
   *
   * @param output where an encryptUpdate or decryptUpdate writes its result (see `Transport.runNow`)
   * @throws what {@link run} rejects with when the step fails
   */
  runNow<N extends CommandName>(build: (session: Handle) => Extract<Command, { op: N }>, output?: Buffer): CommandResult<N> | typeof NOT_NOW {
    if (this.#stepNow === undefined || this.#ended || this.#running !== undefined) return NOT_NOW;
    try {
      return this.#stepNow(build(this.session), this.#transport, output) as CommandResult<N> | typeof NOT_NOW;
    } catch (error) {
      if (classifyError(error) === 'member') this.#broken = true;
      throw error;
    }
  }

  /**
   * Calls `callback` when {@link runNow} may run a step again on the calling thread (see
   * `Transport.whenNow`); false, and no call, when the transport cannot tell (then use {@link run}).
   * `callback` must not throw.
   */
  whenNow(callback: () => void): boolean {
    if (this.#stepNow === undefined || this.#ended || this.#transport.whenNow === undefined) return false;
    this.#transport.whenNow(callback);
    return true;
  }

  /** Gives the session back to the pool: only when no operation is open in it any more. Idempotent. */
  release(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#broken) this.#pool.discard(this.session);
    else this.#pool.release(this.session);
  }

  /**
   * Ends whatever operation is open in the session by closing the session (PKCS#11 2.40
   * has no other way), after the pool opened its replacement (closing a token's last
   * session would log the application out). Waits for a step still running first. Never
   * throws. Idempotent.
   */
  async abort(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    await this.#running?.catch(() => undefined);
    if (this.#broken) this.#pool.discard(this.session);
    else await this.#pool.replace(this.session);
  }
}
