/**
 * Applies a fault schedule (chaos/fault-schedule.ts) to a live group, one fault at a time:
 * before each fault it waits until the previous one has ended and every member serves
 * again (bounded; a fault whose wait runs out is skipped), so that at most one member host
 * is hit at once. A killed host counts as down from the signal on, before the group notices.
 *
 * Processes are reached through the group's internals (`pkcs11-ha/testing`): the pid of
 * the host that serves a member now. Only hosts this process spawned are signalled; a
 * stopped host is continued only while it is still this process's stopped child (checked
 * in /proc, so a recycled pid is never touched). Error and slow-down faults go through the
 * member host's injection hook (src/host/injected-faults.ts): the harness writes the
 * member's control file and sends its host SIGUSR2.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ckrValue, HostTransport, type HaGroup } from '../src/index.js';
import type { InjectedFaults } from '../src/host/injected-faults.js';
import { internalsOf } from '../src/testing.js';
import { countByKind, FAULT_KINDS, type Fault, type FaultKind } from './fault-schedule.js';

/** One applied fault, for the report. */
export interface AppliedFault {
  readonly atMs: number;
  readonly kind: FaultKind;
  readonly member: string;
  readonly detail: string;
}

/** What the injector needs from the run. */
export interface InjectorOptions {
  readonly group: () => HaGroup;
  /** Each member's control file (by member index). */
  readonly controlPaths: readonly string[];
  readonly now: () => number;
  /** Closes the group and opens it again from its journal while `member`'s host is down. */
  readonly restartGroup: (member: number) => Promise<void>;
  /** Longest wait for every member to serve before the next fault. @default 20000 */
  readonly settleMs?: number;
  /** Told of each fault as it is applied. */
  readonly onFault?: (fault: AppliedFault) => void;
}

/** Whether `pid` is a stopped child of this process (Linux /proc). */
export function isStoppedChild(pid: number): boolean {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return Number(rest[1]) === process.pid && (rest[0] === 'T' || rest[0] === 't');
}

/** Whether `pid` is a live child of this process (not a zombie). */
export function isLiveChild(pid: number): boolean {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return Number(rest[1]) === process.pid && rest[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Applies faults to the group (see the file comment). */
export class FaultInjector {
  /** Every member host pid seen during the run (for the leftover check). */
  readonly pids = new Set<number>();
  /** Faults applied, in order. */
  readonly applied: AppliedFault[] = [];
  /** Faults skipped because another member was still down, or theirs had no live host, when their turn came. */
  skipped = 0;
  readonly #o: InjectorOptions;
  /** Members whose host is stopped now, with its pid. */
  readonly #stopped = new Map<number, number>();
  /**
   * Members whose host was killed or told to exit, with that host's pid, until the group
   * has noticed (the member no longer serves on that host): a signalled host still looks
   * like it serves for a moment, and the next fault must not land in that moment.
   */
  readonly #signalled = new Map<number, number>();
  /** Ends of faults in effect: run at their time, or at once by `heal()`. */
  readonly #ends = new Set<{ timer: NodeJS.Timeout; end: () => void; done: Promise<void> }>();

  constructor(options: InjectorOptions) {
    this.#o = options;
  }

  /** Applied faults by kind. */
  get byKind(): Record<FaultKind, number> {
    return countByKind(this.applied);
  }

  /** The pid of the host serving member `index` now, if it runs on one. */
  pidOf(index: number): number | undefined {
    const t = internalsOf(this.#o.group()).members[index]?.transport;
    const pid = t instanceof HostTransport ? t.pid : undefined;
    if (pid !== undefined) this.pids.add(pid);
    return pid;
  }

  /** Names of members that are not serving, or whose host is stopped or signalled, now. */
  down(): string[] {
    return internalsOf(this.#o.group()).members.filter((m) => this.#isDown(m)).map((m) => m.name);
  }

  /** True when no member serves with a running host. */
  allDown(): boolean {
    return internalsOf(this.#o.group()).members.every((m) => this.#isDown(m));
  }

  #isDown(m: { readonly index: number; readonly serving: boolean }): boolean {
    const signalled = this.#signalled.get(m.index);
    if (signalled !== undefined) {
      if (m.serving && this.pidOf(m.index) === signalled) return true;
      this.#signalled.delete(m.index);
    }
    return !m.serving || this.#stopped.has(m.index);
  }

  /**
   * Applies `schedule` from now on (offsets from the run's start, `now()`), until it is
   * done or `stopAtMs` is reached.
   */
  async run(schedule: readonly Fault[], stopAtMs: number): Promise<void> {
    for (const fault of schedule) {
      if (fault.atMs >= stopAtMs) break;
      const wait = fault.atMs - this.#o.now();
      if (wait > 0) await sleep(wait);
      const settled = await this.#settle(stopAtMs);
      if (this.#o.now() >= stopAtMs) break;
      // One member at a time: a fault whose turn comes while another member is still down is skipped.
      if (!settled && fault.kind !== 'groupRestart') {
        this.skipped++;
        continue;
      }
      await this.#apply(fault);
    }
    // The restart from the journal happens once in every run that scheduled it, even when
    // the faults before it slipped past the end.
    const restart = schedule.find((f) => f.kind === 'groupRestart');
    if (restart !== undefined && !this.applied.some((f) => f.kind === 'groupRestart')) {
      await this.#settle(Infinity);
      await this.#apply(restart);
    }
  }

  /** Waits until the faults in effect have ended and every member serves (bounded); true when they do. */
  async #settle(stopAtMs: number): Promise<boolean> {
    await Promise.all([...this.#ends].map((e) => e.done));
    const limit = Date.now() + (this.#o.settleMs ?? 20_000);
    while (this.down().length > 0 && Date.now() < limit && this.#o.now() < stopAtMs) await sleep(50);
    return this.down().length === 0;
  }

  async #apply(fault: Fault): Promise<void> {
    const group = this.#o.group();
    const member = internalsOf(group).members[fault.member]!;
    const pid = this.pidOf(fault.member);
    const live = pid !== undefined && isLiveChild(pid) && member.serving;
    if (!live && fault.kind !== 'groupRestart') {
      this.skipped++;
      return;
    }
    const host = pid ?? 0;
    const record = (detail: string): void => {
      const applied: AppliedFault = { atMs: Math.round(this.#o.now()), kind: fault.kind, member: member.name, detail };
      this.applied.push(applied);
      this.#o.onFault?.(applied);
    };
    switch (fault.kind) {
      case 'kill':
        record(`SIGKILL host ${host}`);
        this.#signalled.set(fault.member, host);
        process.kill(host, 'SIGKILL');
        break;
      case 'restart':
        record(`SIGTERM host ${host} (clean exit; the group starts a new one)`);
        this.#signalled.set(fault.member, host);
        process.kill(host, 'SIGTERM');
        break;
      case 'stop':
        record(`SIGSTOP host ${host} for ${fault.durationMs} ms`);
        this.#stopped.set(fault.member, host);
        process.kill(host, 'SIGSTOP');
        this.#later(fault.durationMs, () => this.#cont(fault.member, host));
        break;
      case 'slow':
        record(`every command ${fault.delayMs} ms slower for ${fault.durationMs} ms`);
        this.#control(fault.member, host, { delayMs: fault.delayMs });
        this.#later(fault.durationMs, () => this.#clear(fault.member, host));
        break;
      case 'error': {
        const rv = ckrValue(fault.ckr);
        if (rv === undefined) throw new Error(`unknown return code ${fault.ckr}`);
        const what = `${fault.count === undefined ? `every command for ${fault.durationMs} ms` : `${fault.count} command(s)`}${fault.ops ? ` of ${fault.ops.join(', ')}` : ''}`;
        record(`module answers ${fault.ckr} to ${what}`);
        this.#control(fault.member, host, { error: { rv, ...(fault.ops ? { ops: fault.ops } : {}), ...(fault.count !== undefined ? { count: fault.count } : {}) } });
        this.#later(fault.durationMs, () => this.#clear(fault.member, host));
        break;
      }
      case 'groupRestart':
        record(`SIGKILL host ${host}, key changes while it is down, then the group closed and opened again from its journal`);
        if (live) process.kill(host, 'SIGKILL');
        await this.#o.restartGroup(fault.member);
        break;
    }
  }

  #later(ms: number, end: () => void): void {
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const entry = {
      timer: setTimeout(() => run(), ms),
      end: () => run(),
      done,
    };
    const run = (): void => {
      if (!this.#ends.delete(entry)) return;
      clearTimeout(entry.timer);
      end();
      finish();
    };
    this.#ends.add(entry);
  }

  #cont(member: number, pid: number): void {
    this.#stopped.delete(member);
    // The group may have failed the member and killed its host meanwhile.
    if (isStoppedChild(pid)) process.kill(pid, 'SIGCONT');
  }

  /** Writes the member's control file and tells its host, if that host still serves the member. */
  #control(member: number, pid: number, faults: InjectedFaults): void {
    writeFileSync(this.#o.controlPaths[member]!, JSON.stringify(faults), { mode: 0o600 });
    // A host that replaced it starts clean; a starting one may not listen for the signal yet.
    if (this.pidOf(member) === pid && isLiveChild(pid)) process.kill(pid, 'SIGUSR2');
  }

  #clear(member: number, pid: number): void {
    this.#control(member, pid, {});
  }

  /** Ends every fault in effect now: stopped hosts continued, injected errors and delays cleared. */
  heal(): void {
    for (const e of [...this.#ends]) e.end();
    for (const [member, pid] of this.#stopped) this.#cont(member, pid);
  }
}

/** Zero counts for every fault kind. */
export function noFaults(): Record<FaultKind, number> {
  return Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
}
