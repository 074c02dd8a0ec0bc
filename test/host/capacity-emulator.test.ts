import { describe, expect, it } from 'vitest';
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

  it('refuses an invalid capacity, echoing the value', () => {
    expect(() => new CapacityEmulator({ engines: 0, serviceTimeMs: 1 })).toThrow(/engines must be a positive integer, got 0/);
    expect(() => new CapacityEmulator({ engines: 1, serviceTimeMs: -1 })).toThrow(/serviceTimeMs .* got -1/);
  });
});
