/**
 * The deadlines of one member's commands in flight: a command that gets no answer within
 * `deadlineMs` fails the member. Each heartbeat from the member's host extends the
 * deadline of every pending command (the host is alive and still working), but never
 * past `ceilingMs` from the command's start: a heartbeat proves the host runs, not that
 * the token makes progress.
 *
 * Cost on the hot path is one Map insert and one delete per command. There is at most
 * one timer, armed for the OLDEST command's expiry: commands start in order, so the
 * oldest always expires first (its start is earliest, and a heartbeat moves every
 * deadline to the same point). When it fires early (that command finished), it re-arms
 * for the new oldest.
 */
import type { Clock, TimerHandle } from '../clock/clock.js';

/** Why a member's command expired. */
export interface DeadlineExpiry {
  /** `deadline`: no answer and no heartbeat for `deadlineMs`; `ceiling`: alive, but the command ran past `ceilingMs`. */
  readonly kind: 'deadline' | 'ceiling';
  /** How long the oldest command had been pending, in ms. */
  readonly pendingMs: number;
  /** Commands pending when it expired. */
  readonly pending: number;
}

/** Options of {@link CommandDeadlines}. */
export interface CommandDeadlinesOptions {
  /** No answer (and no heartbeat) for this long fails the member. */
  readonly deadlineMs: number;
  /** No command lives longer than this, heartbeats or not. */
  readonly ceilingMs: number;
  readonly clock: Clock;
  /** Called once per expiry; the owner fails the member (and then calls {@link CommandDeadlines.clear}). */
  readonly onExpired: (expiry: DeadlineExpiry) => void;
}

/** Deadline bookkeeping for one member's commands in flight. */
export class CommandDeadlines {
  readonly #o: CommandDeadlinesOptions;
  /** Ticket -> start time; Map order is start order. */
  readonly #started = new Map<number, number>();
  #nextTicket = 1;
  #lastHeartbeat = -Infinity;
  #timer: TimerHandle | undefined;

  constructor(options: CommandDeadlinesOptions) {
    this.#o = options;
  }

  /** Commands being timed now. */
  get pending(): number {
    return this.#started.size;
  }

  /** Starts timing a command; give the ticket back to {@link end}. */
  start(): number {
    const ticket = this.#nextTicket++;
    this.#started.set(ticket, this.#o.clock.now());
    if (this.#timer === undefined) this.#arm();
    return ticket;
  }

  /** The command answered (either way). */
  end(ticket: number): void {
    this.#started.delete(ticket);
  }

  /** The host is alive: every pending command's deadline moves to now + deadlineMs (capped by the ceiling). */
  heartbeat(): void {
    this.#lastHeartbeat = this.#o.clock.now();
  }

  /** Forgets every pending command and the timer (the member failed or closed). */
  clear(): void {
    this.#started.clear();
    this.#lastHeartbeat = -Infinity;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** When the oldest pending command expires, and why; undefined with none pending. */
  #oldestExpiry(): { at: number; kind: DeadlineExpiry['kind']; start: number } | undefined {
    for (const start of this.#started.values()) {
      const deadline = Math.max(start, this.#lastHeartbeat) + this.#o.deadlineMs;
      const ceiling = start + this.#o.ceilingMs;
      return ceiling <= deadline ? { at: ceiling, kind: 'ceiling', start } : { at: deadline, kind: 'deadline', start };
    }
    return undefined;
  }

  #arm(): void {
    const next = this.#oldestExpiry();
    if (next === undefined) return;
    const delay = Math.max(0, next.at - this.#o.clock.now());
    this.#timer = this.#o.clock.setTimeout(() => this.#check(), delay);
  }

  #check(): void {
    this.#timer = undefined;
    const next = this.#oldestExpiry();
    if (next === undefined) return;
    const now = this.#o.clock.now();
    if (now >= next.at) {
      this.#o.onExpired({ kind: next.kind, pendingMs: now - next.start, pending: this.#started.size });
      return;
    }
    this.#arm();
  }
}
