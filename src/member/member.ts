/**
 * One member of the group: a token behind a transport, its health, its session pool and
 * its count of outstanding commands (queued + running), which is what "least busy" reads.
 */
import type { Clock } from '../clock/clock.js';
import { classifyError, isAlreadyLoggedIn, isNotLoggedIn, isPinError, takesMemberOut } from '../errors/classification.js';
import { DeadlineError, InvalidArgumentError, MemberUnreachableError, Pkcs11Error, type HaError } from '../errors/ha-error.js';
import { commandError } from './command-error.js';
import type { Command, CommandName, CommandResult, Handle } from '../pkcs11/commands.js';
import { NOT_NOW, type TokenInfo, type Transport } from '../transport/transport.js';
import { isPromoted, isServing, roleOf, servingState, type MemberRole, type MemberState } from './member-state.js';
import { SessionPool } from './session-pool.js';
import { SessionLease } from './session-lease.js';
import { CommandDeadlines, type DeadlineExpiry } from './command-deadlines.js';
import type { Secret } from './secret.js';
import type { MemberSnapshot } from './member-snapshot.js';
import type { CommandObserver } from './command-observer.js';
import { InFlight } from './in-flight.js';

export type { MemberSnapshot } from './member-snapshot.js';

/** Told about every change of a member's state. */
export type MemberStateListener = (member: Member, previous: MemberState, cause: Error | undefined) => void;

/** Options of a {@link Member}. */
export interface MemberOptions {
  readonly name: string;
  /** Position in the group's member order (primary election and round-robin follow it). */
  readonly index: number;
  readonly role: MemberRole;
  /** The member's own user PIN, used at recovery instead of the application's when set. */
  readonly userPin?: Secret | undefined;
  /** The member's security officer PIN, for the domain ceremony. */
  readonly soPin?: Secret | undefined;
  readonly transport: Transport;
  /** Makes a fresh transport for each reconnection; without it the first one is connected again. */
  readonly newTransport?: () => Transport;
  /** Most sessions this member keeps open (= most commands in flight on it). */
  readonly maxSessions: number;
  /** A command with no answer (and no heartbeat) for this long fails the member. @default 20000 */
  readonly deadlineMs?: number;
  /** No command lives longer than this, heartbeats or not. @default 120000 */
  readonly ceilingMs?: number;
  readonly clock: Clock;
  readonly onStateChange: MemberStateListener;
  /** Told of each command (metrics, diagnostics channels). @default none */
  readonly observer?: CommandObserver | undefined;
}

/** A member of an HA group. */
export class Member {
  readonly name: string;
  readonly index: number;
  readonly #options: MemberOptions;
  readonly #clock: Clock;
  readonly #onStateChange: MemberStateListener;
  readonly #deadlines: CommandDeadlines;
  #transport: Transport;
  #pool: SessionPool;
  #state: MemberState;
  #token: TokenInfo | undefined;
  readonly #inFlight = new InFlight();
  #served = 0;
  #loginFailures = 0;
  #failures = 0;
  /** The shutdown of the last failed transport, awaited before a reconnection. */
  #closing: Promise<void> = Promise.resolve();
  /** Whether this application is logged in on the token (login state is token-wide). */
  #loggedIn = false;

  constructor(options: MemberOptions) {
    this.name = options.name;
    this.index = options.index;
    this.#options = options;
    this.#clock = options.clock;
    this.#onStateChange = options.onStateChange;
    this.#state = { kind: 'failed', role: options.role, since: options.clock.now(), attempts: 0, reason: 'not connected yet' };
    const deadlineMs = options.deadlineMs ?? 20_000;
    const ceilingMs = options.ceilingMs ?? 120_000;
    this.#deadlines = new CommandDeadlines({ deadlineMs, ceilingMs, clock: options.clock, onExpired: (e) => this.#expired(e, deadlineMs, ceilingMs) });
    this.#transport = options.transport;
    this.#pool = this.#newPool(options.transport);
    this.#attach(options.transport);
  }

  /** The transport in use now (a reconnection brings a new one). */
  get transport(): Transport {
    return this.#transport;
  }

  /** Current state. */
  get state(): MemberState {
    return this.#state;
  }

  /** True when this member can take commands. */
  get serving(): boolean {
    return isServing(this.#state);
  }

  /** The member's own configured user PIN, if any (never printed). */
  get userPin(): Secret | undefined {
    return this.#options.userPin;
  }

  /** The member's configured security officer PIN, if any (never printed). */
  get soPin(): Secret | undefined {
    return this.#options.soPin;
  }

  /** Configured role (kept in the state, whatever the member's health). */
  get role(): MemberRole {
    return roleOf(this.#state);
  }

  /** True while a standby member serves as an active one (no active member is left). */
  get promoted(): boolean {
    return isPromoted(this.#state);
  }

  /** Commands queued or running on this member. */
  get outstanding(): number {
    return this.#inFlight.count;
  }

  /** Resolves once every command of this process queued or running on the member now has ended. */
  drained(): Promise<void> {
    return this.#inFlight.drained();
  }

  /** Commands the member's host reports for other application processes (0 when its transport does not count them). */
  get hostLoad(): number {
    return this.#transport.hostLoad ?? 0;
  }

  /** Connects the transport and finds the token; the member then takes its configured role. */
  async connect(): Promise<void> {
    try {
      this.#token = await this.transport.connect();
    } catch (error) {
      const cause = error instanceof Error ? error : undefined;
      this.#setState({ kind: 'failed', role: this.role, since: this.#clock.now(), attempts: 0, reason: cause?.message ?? String(error) }, cause);
      throw error;
    }
    this.#setState(servingState(this.role), undefined);
  }

  /**
   * Runs a command on a pooled session of this member. The session is held for exactly
   * this command. A member fault fails the member; any error is rethrown typed.
   */
  async run<N extends CommandName>(build: (session: Handle) => Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    const epoch = this.#inFlight.enter();
    try {
      // An idle session is taken without a promise: this is the hot path of every operation.
      const pool = this.#pool;
      const session = pool.tryAcquire() ?? (await pool.acquire());
      const command = build(session);
      const transport = this.#transport;
      const ticket = this.#deadlines.start();
      const began = this.#options.observer?.started() ?? -1;
      try {
        const result = await transport.execute(command);
        this.#deadlines.end(ticket);
        if (began >= 0) this.#options.observer!.ended(this.name, command.op, began, undefined);
        this.#served++;
        pool.release(session);
        return result;
      } catch (raw) {
        this.#deadlines.end(ticket);
        const error = this.#failed(raw, command.op, transport);
        if (began >= 0) this.#options.observer!.ended(this.name, command.op, began, error);
        const memberFault = classifyError(error) === 'member';
        // Only an answer counts as served; a lost connection is not one.
        if (!memberFault) this.#served++;
        if (error instanceof Pkcs11Error && memberFault) pool.discard(session);
        else pool.release(session);
        throw error;
      }
    } finally {
      this.#inFlight.leave(epoch);
    }
  }

  /**
   * Holds one pooled session for several commands in a row (a multi-part operation's
   * steps). Waits for a session like {@link run}; counted as outstanding only while it
   * waits and while a step runs.
   */
  async lease(): Promise<SessionLease> {
    const epoch = this.#inFlight.enter();
    try {
      const pool = this.#pool;
      const session = pool.tryAcquire() ?? (await pool.acquire());
      return new SessionLease(
        this.name,
        session,
        pool,
        this.#transport,
        (command, transport) => this.#leased(command, transport),
        (command, transport, output) => this.#leasedNow(command, transport, output),
      );
    } finally {
      this.#inFlight.leave(epoch);
    }
  }

  /** One step on a leased session. */
  async #leased(command: Command, transport: Transport): Promise<unknown> {
    const epoch = this.#inFlight.enter();
    try {
      const result = await this.#send(command as Extract<Command, { op: CommandName }>, transport);
      this.#served++;
      return result;
    } catch (error) {
      if (classifyError(error) !== 'member') this.#served++;
      throw error;
    } finally {
      this.#inFlight.leave(epoch);
    }
  }

  /**
   * One step on a leased session made synchronously by the transport, or NOT_NOW. No
   * deadline: a call that returns before this does cannot outlive one.
   */
  #leasedNow(command: Command, transport: Transport, output?: Buffer): unknown {
    let result: unknown;
    const began = this.#options.observer?.started() ?? -1;
    try {
      result = transport.runNow!(command as Extract<Command, { op: CommandName }>, output);
    } catch (raw) {
      const error = this.#failed(raw, command.op, transport);
      if (began >= 0) this.#options.observer!.ended(this.name, command.op, began, error);
      if (classifyError(error) !== 'member') this.#served++;
      throw error;
    }
    if (result !== NOT_NOW) this.#served++;
    if (result !== NOT_NOW && began >= 0) this.#options.observer!.ended(this.name, command.op, began, undefined);
    return result;
  }

  /**
   * Asks the member a cheap question (one random byte) to tell whether it is sick after
   * an ambiguous error. A member fault in the probe fails the member, and so does an
   * ambiguous answer to it.
   *
   * @returns true when the member answered (so the ambiguous error was not its fault)
   */
  async probe(): Promise<boolean> {
    if (!this.serving) return false;
    // Only on an idle session: with every session busy the member is answering others,
    // and a hang is the deadline's to find. A probe never queues behind the pool.
    const session = this.#pool.tryAcquire();
    if (session === undefined) return true;
    const epoch = this.#inFlight.enter();
    try {
      await this.#send({ op: 'generateRandom', session, length: 1 });
      this.#pool.release(session);
      return true;
    } catch (error) {
      const fault = classifyError(error);
      if (fault === 'member') this.#pool.discard(session);
      else this.#pool.release(session);
      // No input of the caller's is involved in one random byte: an ambiguous answer means a sick module.
      if (fault === 'ambiguous' && this.serving) this.fail('a probe (one random byte) was answered with an ambiguous error', error as Error);
      return fault === 'caller' && this.serving;
    } finally {
      this.#inFlight.leave(epoch);
    }
  }

  /** Runs a command on a session the caller owns (a virtual session's backing session). */
  async runOn<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    const epoch = this.#inFlight.enter();
    try {
      return await this.#send(command);
    } finally {
      this.#inFlight.leave(epoch);
    }
  }

  /** Opens a session outside the pool, for a caller that keeps it (session objects live in it). */
  openSession(): Promise<Handle> {
    return this.runOn({ op: 'openSession', slot: this.#slot() });
  }

  /**
   * Logs the user in (login state is shared by all sessions of this application on the
   * token). A PIN error is counted and rethrown; it never changes the member's health.
   *
   * @returns false when the token said it was logged in already: the PIN was NOT checked
   */
  async login(userType: number, pin: string): Promise<boolean> {
    let checked = true;
    try {
      await this.run<'login'>((session) => ({ op: 'login', session, userType, pin }));
    } catch (error) {
      if (isPinError(error)) this.#loginFailures++;
      if (!isAlreadyLoggedIn(error)) throw error;
      checked = false;
    }
    this.#loggedIn = true;
    return checked;
  }

  /** Whether this application is logged in on the member's token (as far as the group knows). */
  get loggedIn(): boolean {
    return this.#loggedIn;
  }

  /** Logs out; "not logged in" counts as done. */
  async logout(): Promise<void> {
    try {
      await this.run<'logout'>((session) => ({ op: 'logout', session }));
    } catch (error) {
      if (!isNotLoggedIn(error)) throw error;
    } finally {
      this.#loggedIn = false;
    }
  }

  /**
   * Takes the member out of service: its pending commands fail (the router runs them
   * elsewhere), its sessions and transport are dropped. Idempotent while failed. A
   * failure while recovering counts as a failed recovery attempt.
   */
  fail(reason: string, cause?: Error): void {
    const state = this.#state;
    if (state.kind === 'failed' || state.kind === 'removed') return;
    const attempts = state.kind === 'recovering' ? state.attempt : 0;
    if (state.kind !== 'recovering') this.#failures++;
    this.#loggedIn = false;
    this.#deadlines.clear();
    const error = new MemberUnreachableError(this.name, reason, { cause });
    void this.#pool.drain(error);
    // Closing the transport rejects what is still in flight on it: a hung command must not
    // keep its caller waiting, the router runs it again elsewhere.
    this.#closing = this.#transport.close({ force: true }).catch(() => undefined);
    this.#setState({ kind: 'failed', role: roleOf(state), since: this.#clock.now(), attempts, reason }, cause);
  }

  /**
   * Starts a recovery attempt: connects a fresh transport and finds the token. The member
   * is `recovering` afterwards and takes no traffic until {@link rejoin}; the group logs
   * it in and resynchronises it in between. A failure leaves it failed with one more attempt.
   *
   * @throws what the connection threw
   */
  async reconnect(): Promise<void> {
    const state = this.#state;
    if (state.kind !== 'failed') throw new InvalidArgumentError(`member ${this.name} is ${state.kind}, not failed`);
    // The new transport and pool are in place before anything can fail: a late answer
    // from the old transport is then told apart and cannot fail this attempt.
    const old = this.#transport;
    const transport = this.#options.newTransport?.() ?? old;
    this.#transport = transport;
    this.#pool = this.#newPool(transport);
    if (transport !== old) this.#attach(transport);
    this.#setState({ kind: 'recovering', role: state.role, since: this.#clock.now(), attempt: state.attempts + 1 }, undefined);
    // The old transport must be fully down first: a module loaded once per process is
    // shared, and a new connection racing the old one's shutdown can hang on it.
    await this.#closing;
    if (transport !== old) await old.close().catch(() => undefined);
    try {
      this.#token = await transport.connect();
    } catch (error) {
      const cause = error instanceof Error ? error : undefined;
      this.fail(`recovery: ${cause?.message ?? String(error)}`, cause);
      throw error;
    }
    if (this.#state.kind !== 'recovering') {
      // Closed or failed while connecting: what the connection started must not outlive it.
      await transport.close().catch(() => undefined);
      throw new MemberUnreachableError(this.name, `${this.#state.kind} while reconnecting`);
    }
  }

  /** Ends a recovery: the member takes traffic again in its configured role. */
  rejoin(): void {
    const state = this.#state;
    if (state.kind !== 'recovering') throw new InvalidArgumentError(`member ${this.name} is ${state.kind}, not recovering`);
    this.#setState(servingState(state.role), undefined);
  }

  /** Changes the configured role (mark or unmark standby); a serving member takes it at once. */
  setRole(role: MemberRole): void {
    const state = this.#state;
    if (role === roleOf(state) || state.kind === 'removed') return;
    // Out of service, only the role it comes back in changes: no change of health to tell.
    if (isServing(state)) this.#setState(servingState(role), undefined);
    else this.#state = { ...state, role };
  }

  /**
   * Promotes a serving standby member to serve as an active one, or demotes it back.
   * Not a change of health: the state listener is not told (the group, which decides
   * promotions, announces them itself).
   *
   * @returns true when the state changed
   */
  setPromoted(promoted: boolean): boolean {
    const state = this.#state;
    if (state.kind !== 'standby' || state.promoted === promoted) return false;
    this.#state = { kind: 'standby', promoted };
    return true;
  }

  /** A plain snapshot for status output. */
  snapshot(): MemberSnapshot {
    return {
      name: this.name,
      index: this.index,
      role: this.role,
      promoted: this.promoted,
      state: this.#state,
      transport: this.transport.kind,
      token: this.#token && { label: this.#token.label, serial: this.#token.serial },
      outstanding: this.#inFlight.count,
      served: this.#served,
      loginFailures: this.#loginFailures,
      failures: this.#failures,
      sessions: this.#pool.stats,
    };
  }

  /** Closes sessions and the transport. Idempotent. */
  async close(): Promise<void> {
    if (this.#state.kind === 'removed') return;
    this.#setState({ kind: 'removed', role: this.role }, undefined);
    this.#deadlines.clear();
    // The transport first: it rejects what is in flight and ends the module's sessions with
    // it, so a hung member cannot keep close() waiting on session closes it never answers.
    const closing = this.#transport.close().catch(() => undefined);
    // Commands still waiting for a session never reached the transport.
    await this.#pool.drain(new MemberUnreachableError(this.name, 'member closed', { unsent: true }));
    await closing;
  }

  #slot(): Handle {
    if (this.#token === undefined) throw new MemberUnreachableError(this.name, 'not connected');
    return this.#token.slot;
  }

  /** A session pool bound to one transport: its sessions mean nothing to another. */
  #newPool(transport: Transport): SessionPool {
    const open = () => this.#send({ op: 'openSession', slot: this.#slot() }, transport);
    return new SessionPool({ open, close: (session) => this.#send({ op: 'closeSession', session }, transport) }, this.#options.maxSessions);
  }

  /** Listens to a transport; events of a replaced transport are ignored. */
  #attach(transport: Transport): void {
    transport.onDisconnect((error) => {
      if (transport === this.#transport) this.fail(error.message, error);
    });
    transport.onHeartbeat?.(() => {
      if (transport === this.#transport) this.#deadlines.heartbeat();
    });
  }

  #expired(e: DeadlineExpiry, deadlineMs: number, ceilingMs: number): void {
    const why =
      e.kind === 'deadline'
        ? `no answer for ${Math.round(e.pendingMs)} ms (deadline ${deadlineMs} ms, ${e.pending} commands pending)`
        : `a command ran ${Math.round(e.pendingMs)} ms, past the ceiling of ${ceilingMs} ms`;
    this.fail(why, new DeadlineError(this.name, why));
  }

  #setState(next: MemberState, cause: Error | undefined): void {
    const previous = this.#state;
    this.#state = next;
    this.#onStateChange(this, previous, cause);
  }

  /** Sends a command and turns what comes back into a typed error; fails the member on a member fault. */
  async #send<N extends CommandName>(command: Extract<Command, { op: N }>, transport: Transport = this.#transport): Promise<CommandResult<N>> {
    const ticket = this.#deadlines.start();
    const began = this.#options.observer?.started() ?? -1;
    let error: HaError | undefined;
    try {
      return await transport.execute(command);
    } catch (raw) {
      throw (error = this.#failed(raw, command.op, transport));
    } finally {
      this.#deadlines.end(ticket);
      if (began >= 0) this.#options.observer!.ended(this.name, command.op, began, error);
    }
  }

  /** Types what a command threw, and fails the member on a member fault. */
  #failed(raw: unknown, op: CommandName, transport: Transport): HaError {
    const error = commandError(raw, op, this);
    // A late answer from a transport already replaced (by a reconnection) says nothing of the new one.
    if (transport !== this.#transport) return error;
    if (takesMemberOut(error)) this.fail(error.message, error);
    return error;
  }
}
