/**
 * What a group tells about itself beyond its events' content: wall-clock times in events
 * and status (through the clock seam, so a fake clock moves them), each member host's pid,
 * and the members that failed while the group opened, told to listeners given before
 * opening (`on`). Real SoftHSM2 tokens; member hosts where a pid is asked for.
 */
import { describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { MemberConnectFailedEvent } from '../../src/events/group-events.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { faultGroups, INTERVAL_MS } from '../helpers/fault-group.js';
import { hostPid } from '../helpers/host-pid.js';
import { until } from '../helpers/until.js';

const fx = faultGroups({ prefix: 'go' });
const EPOCH = Date.UTC(2026, 5, 1, 12, 0, 0);

/** A fake clock whose dates are pinned: EPOCH at its zero. */
class DatedClock extends FakeClock {
  wallNow(): number {
    return EPOCH + this.now();
  }
}

describe('wall-clock times', () => {
  it('events and status carry the dates of a clock that has wallNow, moved by the fake clock', async () => {
    const clock = new DatedClock(1_000);
    const h = await fx.openSigning({ extra: { clock } });
    const times: { name: string; time: number }[] = [];
    for (const name of ['memberFailed', 'memberStateChanged', 'primaryChanged', 'memberRecovered'] as const) h.group.on(name, (e) => void times.push({ name, time: e.time }));

    const opened = h.group.status();
    expect(opened.time).toBe(EPOCH + 1_000);
    // Every member entered its state (active) when it connected, at the clock's start.
    expect(opened.members.map((m) => m.changedAt)).toEqual([EPOCH + 1_000, EPOCH + 1_000, EPOCH + 1_000]);

    clock.advance(4_000);
    h.faults[0]!.disconnect();
    expect(times).toEqual(
      expect.arrayContaining([
        { name: 'memberStateChanged', time: EPOCH + 5_000 },
        { name: 'memberFailed', time: EPOCH + 5_000 },
        { name: 'primaryChanged', time: EPOCH + 5_000 },
      ]),
    );
    clock.advance(250);
    const failed = h.group.status();
    expect(failed.time).toBe(EPOCH + 5_250);
    expect(failed.members[0]).toMatchObject({ changedAt: EPOCH + 5_000, state: { kind: 'failed', since: 5_000 } });
    expect(failed.members[1]!.changedAt).toBe(EPOCH + 1_000);

    clock.advance(INTERVAL_MS);
    await until(() => h.group.status().members[0]!.state.kind === 'active', 'the recovery');
    // The attempt's timer fired at 5_500; the reconnection it started finished after advance() returned.
    expect(times).toContainEqual({ name: 'memberRecovered', time: EPOCH + 5_750 });
    expect(h.group.status().members[0]!.changedAt).toBe(EPOCH + 5_750);
  });

  it('a clock without wallNow reads the date once and moves it with now()', async () => {
    const clock = new FakeClock(1_000);
    const before = Date.now();
    const h = await fx.open({ extra: { clock } });
    const after = Date.now();
    const first = h.group.status().time;
    expect(first).toBeGreaterThanOrEqual(before);
    expect(first).toBeLessThanOrEqual(after);
    clock.advance(60_000);
    // Exactly the fake minute later, however long the test took in real time.
    expect(h.group.status().time).toBe(first + 60_000);
    let failedAt = 0;
    h.group.on('memberFailed', (e) => (failedAt = e.time));
    h.faults[1]!.disconnect();
    expect(failedAt).toBe(first + 60_000);
  });
});

describe('member hosts in status', () => {
  it('each member shows the pid of its host process; none in process', async () => {
    const members = fx.bed.memberConfigs();
    const group = fx.track(await HaGroup.open({ members: members.slice(0, 2), transport: 'host' }));
    const status = group.status();
    expect(status.members.map((m) => m.pid)).toEqual([hostPid(group, 0), hostPid(group, 1)]);
    expect(status.members.every((m) => m.pid !== process.pid)).toBe(true);
    const inProcess = await fx.open({ count: 1 });
    expect(inProcess.group.status().members[0]!.pid).toBeUndefined();
  }, 30_000);
});

describe('members that fail while the group opens', () => {
  it('are told to listeners given in `on` before open() returns: module not found (ERR_CONFIG), no such token (ERR_MEMBER_UNREACHABLE)', async () => {
    const [good, second, third] = fx.bed.memberConfigs();
    const heard: MemberConnectFailedEvent[] = [];
    const states: string[] = [];
    let openReturned = false;
    const group = fx.track(
      await HaGroup.open({
        members: [
          good!,
          { ...second!, name: 'no-module', module: { path: '/nonexistent/libsofthsm2.so' } },
          { ...third!, name: 'no-token', token: { label: 'no-such-token' } },
        ],
        transport: 'host',
        recovery: { maxAttempts: 0 },
        on: {
          memberConnectFailed: (e) => {
            expect(openReturned).toBe(false);
            heard.push(e);
          },
          memberStateChanged: (e) => void states.push(`${e.member}:${e.current.kind}`),
        },
      }),
    );
    openReturned = true;
    expect(heard.map((e) => [e.member, e.code])).toEqual(
      expect.arrayContaining([
        ['no-module', 'ERR_CONFIG'],
        ['no-token', 'ERR_MEMBER_UNREACHABLE'],
      ]),
    );
    expect(heard).toHaveLength(2);
    expect(heard.find((e) => e.member === 'no-module')!.reason).toContain('/nonexistent/libsofthsm2.so');
    expect(heard.find((e) => e.member === 'no-token')!.reason).toContain('no-such-token');
    expect(heard.every((e) => typeof e.time === 'number' && Math.abs(e.time - Date.now()) < 60_000)).toBe(true);
    expect(states).toEqual(expect.arrayContaining([`${good!.name}:active`, 'no-module:failed', 'no-token:failed']));
    expect(group.status().members.map((m) => m.state.kind)).toEqual(['active', 'failed', 'failed']);
  }, 60_000);

  it('`on` with an unknown event or a listener that is not a function is refused with ERR_CONFIG', async () => {
    const members = fx.bed.memberConfigs();
    await expect(HaGroup.open({ members, on: { memberFialed: () => {} } as never })).rejects.toMatchObject({ code: 'ERR_CONFIG', path: 'on.memberFialed' });
    await expect(HaGroup.open({ members, on: { memberFailed: 'log' } as never })).rejects.toMatchObject({ code: 'ERR_CONFIG', path: 'on.memberFailed' });
  });
});
