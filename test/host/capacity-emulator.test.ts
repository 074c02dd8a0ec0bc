import { describe, expect, it } from 'vitest';
import type { Clock, TimerHandle } from '../../src/clock/clock.js';
import { CapacityEmulator } from '../../src/host/capacity-emulator.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** Lets promise callbacks run (the emulator's settle steps are promise reactions). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe('CapacityEmulator (EMULATION)', () => {
  it('runs at most `engines` commands at once and holds each slot for the service time', async () => {
    const clock = new FakeClock();
    const device = new CapacityEmulator({ engines: 2, serviceTimeMs: 10 }, clock);
    const started: number[] = [];
    const done: number[] = [];
    const runs = Array.from({ length: 5 }, (_, i) =>
      device.run(async () => {
        started.push(i);
        return i;
      }).then((v) => done.push(v)),
    );
    await settle();
    // Two started; the work finished at once, but the slots are held until 10 ms.
    expect(started).toEqual([0, 1]);
    expect(device.busy).toBe(2);
    expect(device.queued).toBe(3);
    expect(done).toEqual([]);
    clock.advance(9);
    await settle();
    expect(done).toEqual([]);
    clock.advance(1);
    await settle();
    expect(done).toEqual([0, 1]);
    expect(started).toEqual([0, 1, 2, 3]);
    clock.advance(10);
    await settle();
    clock.advance(10);
    await settle();
    await Promise.all(runs);
    expect(done).toEqual([0, 1, 2, 3, 4]);
    expect(device.maxBusy).toBe(2);
    expect(device.busy).toBe(0);
  });

  it('does not add time to a command slower than the service time, and passes failures through', async () => {
    const clock = new FakeClock();
    const device = new CapacityEmulator({ engines: 1, serviceTimeMs: 5 }, clock);
    let finish!: () => void;
    const slow = device.run(() => new Promise<string>((resolve) => (finish = () => resolve('slow'))));
    const failing = device.run(() => Promise.reject(new Error('boom')));
    await settle();
    clock.advance(50);
    finish();
    await expect(slow).resolves.toBe('slow');
    await settle();
    clock.advance(5);
    await expect(failing).rejects.toThrow('boom');
    expect(device.maxBusy).toBe(1);
  });

  it('does not lose capacity to a late timer: the next command on the slot counts from when it was due to free', async () => {
    // A clock whose timers the test fires itself, as late as it likes: what a process
    // waiting for a CPU sees (the fake clock always fires on time).
    let now = 0;
    const timers: { at: number; callback: () => void }[] = [];
    const late: Clock = {
      now: () => now,
      setTimeout(callback, ms) {
        timers.push({ at: now + ms, callback });
        return 0 as unknown as TimerHandle;
      },
      clearTimeout: () => undefined,
    };
    const fireAt = async (t: number): Promise<void> => {
      now = t;
      for (const timer of timers.splice(0).filter((x) => x.at <= t)) timer.callback();
      await settle();
    };
    const device = new CapacityEmulator({ engines: 1, serviceTimeMs: 10 }, late);
    const done: [number, number][] = [];
    const runs = [0, 1, 2].map((i) => device.run(async () => i).then((v) => done.push([v, now])));
    await settle();
    expect(timers.map((t) => t.at)).toEqual([10]);
    // Due at 10, fired 3 ms late: the next command counts from 10, so it is due at 20, not 23.
    await fireAt(13);
    expect(done).toEqual([[0, 13]]);
    expect(timers.map((t) => t.at)).toEqual([20]);
    await fireAt(20);
    expect(timers.map((t) => t.at)).toEqual([30]);
    // Never faster than the capacity: a command queued after its slot was due (at 32, the
    // slot due at 30, its timer firing at 33) counts from when it came.
    now = 32;
    const lateJob = device.run(async () => 'x');
    await settle();
    await fireAt(33);
    expect(timers.map((t) => t.at)).toEqual([42]);
    await fireAt(42);
    await Promise.all(runs);
    expect(done.map(([v]) => v)).toEqual([0, 1, 2]);
    await expect(lateJob).resolves.toBe('x');
    expect(device.maxBusy).toBe(1);
  });

  it('refuses an invalid capacity, echoing the value', () => {
    expect(() => new CapacityEmulator({ engines: 0, serviceTimeMs: 1 })).toThrow(/engines must be a positive integer, got 0/);
    expect(() => new CapacityEmulator({ engines: 1, serviceTimeMs: -1 })).toThrow(/serviceTimeMs .* got -1/);
  });
});
