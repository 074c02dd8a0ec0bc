/**
 * Watches the group while the story runs: samples `status()` a few times a second into
 * the {@link Timeline} and shows it, as a live table on a terminal or a plain line a second.
 */
import type { GroupStatus, HaGroup, MemberStatus } from '../../src/index.js';
import type { Hosts } from './hosts.js';
import type { MixedLoad } from './load.js';
import type { Screen } from './screen.js';
import type { LaneState, Timeline } from './timeline.js';

const SAMPLE_MS = 250;
/** Rates are measured over this window (seconds). */
const WINDOW_S = 1;

/** How a member stands, as the table and the chart show it. */
export function laneState(m: MemberStatus): LaneState {
  return m.state.kind === 'standby' && m.state.promoted ? 'promoted' : m.state.kind;
}

/** The sampler. */
export class Monitor {
  readonly #group: HaGroup;
  readonly #load: MixedLoad;
  readonly #screen: Screen;
  readonly #timeline: Timeline;
  readonly #hosts: Hosts;
  #phase = '';
  #timer: NodeJS.Timeout | undefined;
  readonly #history: { t: number; ok: number; served: Map<string, number> }[] = [];
  #lastPlain = 0;

  constructor(group: HaGroup, load: MixedLoad, screen: Screen, timeline: Timeline, hosts: Hosts) {
    this.#group = group;
    this.#load = load;
    this.#screen = screen;
    this.#timeline = timeline;
    this.#hosts = hosts;
  }

  /** What the story is doing now, for the table's title. */
  set phase(phase: string) {
    this.#phase = phase;
  }

  /** Starts sampling. */
  start(): void {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), SAMPLE_MS);
  }

  /** Takes a last sample and stops. */
  stop(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#sample();
    this.#screen.endTable();
  }

  #sample(): void {
    const t = this.#screen.now();
    const status = this.#group.status();
    const ok = this.#load.ok;
    const served = new Map(status.members.map((m) => [m.name, m.served]));
    // Rates over the last second (a few samples): smoother than from one sample to the next.
    this.#history.push({ t, ok, served });
    while (this.#history.length > 1 && t - this.#history[1]!.t >= WINDOW_S) this.#history.shift();
    const then = this.#history[0]!;
    const dt = t - then.t;
    const perSecond = (now: number, before: number | undefined): number => (dt > 0 && before !== undefined ? Math.max(0, now - before) / dt : 0);
    const rates = new Map(status.members.map((m) => [m.name, perSecond(m.served, then.served.get(m.name))]));
    const opsPerSecond = perSecond(ok, then.ok);
    this.#timeline.sample({
      t,
      opsPerSecond,
      failed: this.#load.failed,
      served: Object.fromEntries(rates),
      states: Object.fromEntries(status.members.map((m) => [m.name, laneState(m)])),
    });
    if (this.#screen.live) {
      this.#screen.table(this.#table(status, rates, opsPerSecond));
    } else if (t - this.#lastPlain >= 1) {
      this.#lastPlain = t;
      const members = status.members.map((m) => `${m.name} ${laneState(m)} ${Math.round(rates.get(m.name) ?? 0)}/s${m.owed > 0 ? ` owes ${m.owed}` : ''}`);
      this.#screen.statusLine(`status: ${Math.round(opsPerSecond)} ops/s, ${ok} ok, ${this.#load.failed} failed | ${members.join(' | ')}`);
    }
  }

  #table(status: GroupStatus, rates: ReadonlyMap<string, number>, opsPerSecond: number): string[] {
    const row = (cells: readonly string[]): string =>
      `  ${cells[0]!.padEnd(12)} ${cells[1]!.padEnd(8)} ${cells[2]!.padEnd(11)} ${cells[3]!.padStart(7)} ${cells[4]!.padStart(9)} ${cells[5]!.padStart(9)} ${cells[6]!.padStart(5)} ${cells[7]!.padStart(8)}`;
    const lines = [
      '',
      `\x1b[1m pkcs11-ha demo · ${this.#screen.now().toFixed(1)} s · ${this.#phase}\x1b[0m`,
      row(['member', 'role', 'state', 'pid', 'calls/s', 'served', 'owes', 'failures']),
    ];
    for (const m of status.members) {
      const state = laneState(m);
      const color = state === 'failed' ? '\x1b[31m' : state === 'promoted' || state === 'recovering' ? '\x1b[33m' : state === 'active' ? '\x1b[32m' : '';
      const line = row([
        m.name,
        m.role,
        state + (m.name === status.primary ? ' *' : ''),
        state === 'failed' ? '-' : String(this.#hosts.pid(m.name) ?? '-'),
        Math.round(rates.get(m.name) ?? 0).toLocaleString('en-US'),
        m.served.toLocaleString('en-US'),
        String(m.owed),
        String(m.failures),
      ]);
      lines.push(color === '' ? line : `${color}${line}\x1b[0m`);
    }
    const failed = this.#load.failed;
    lines.push(
      ` load: ${Math.round(opsPerSecond).toLocaleString('en-US')} ops/s · ${this.#load.ok.toLocaleString('en-US')} ok · ` +
        `${failed > 0 ? `\x1b[31m${failed} failed\x1b[0m` : '0 failed'} · primary (*) ${status.primary ?? 'none'}`,
    );
    return lines;
  }
}
