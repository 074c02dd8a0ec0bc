/**
 * What passes through a group's observer, on real SoftHSM2 tokens with fault-injecting
 * transports and a fake clock: the diagnostics channels' messages (operations, failovers,
 * recovery) and the logger's lines (a member host's stderr among them), none carrying a PIN.
 */
import diagnostics from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { FAILOVER_CHANNEL, OPERATION_CHANNEL, RECOVERY_CHANNEL, type FailoverMessage, type OperationMessage, type RecoveryMessage } from '../../src/observability/channels.js';
import type { Logger } from '../../src/observability/logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { faultGroups, INTERVAL_MS } from '../helpers/fault-group.js';
import { until } from '../helpers/until.js';

const fx = faultGroups({ prefix: 'ob' });
const EPOCH = Date.UTC(2026, 0, 2, 3, 4, 5);

/** A fake clock whose dates are pinned: EPOCH at its zero. */
class DatedClock extends FakeClock {
  wallNow(): number {
    return EPOCH + this.now();
  }
}

/** Subscribes to a channel until the test's end. */
function listen<T>(name: string): T[] {
  const messages: T[] = [];
  const fn = (m: unknown): void => void messages.push(m as T);
  diagnostics.subscribe(name, fn);
  fx.cleanup(() => diagnostics.unsubscribe(name, fn));
  return messages;
}

/** Signs until the faults queued on `f` were hit (the scheduler takes members in turn). */
async function signUntilHit(h: { sign(): Promise<Buffer>; faults: { queuedFaults: number }[] }, index: number): Promise<void> {
  for (let i = 0; i < 10 && h.faults[index]!.queuedFaults > 0; i++) await h.sign().catch(() => undefined);
  expect(h.faults[index]!.queuedFaults).toBe(0);
}

/** Every secret of the test bed's tokens. */
const pins = (): string[] => fx.bed.tokens.flatMap((t) => [t.userPin, t.soPin]);

describe('diagnostics channels', () => {
  it('publish each operation, the failover of a member and its recovery, with times and no PIN', async () => {
    const operations = listen<OperationMessage>(OPERATION_CHANNEL);
    const failovers = listen<FailoverMessage>(FAILOVER_CHANNEL);
    const recoveries = listen<RecoveryMessage>(RECOVERY_CHANNEL);
    const clock = new DatedClock(1_000);
    const h = await fx.openSigning({ extra: { clock } });
    const [a, b] = h.group.status().members.map((m) => m.name) as [string, string];

    operations.length = 0;
    expect(await h.sign()).toEqual(h.expectedMac);
    expect(operations).toEqual([{ member: expect.any(String), command: 'sign', outcome: 'ok', durationMs: 0, time: EPOCH + 1_000 }]);

    // A caller error: the member answered; its return code is in the message.
    h.faults[0]!.failNext('sign', { rv: 0x7 });
    await signUntilHit(h, 0);
    expect(operations.find((o) => o.outcome === 'error')).toEqual({ member: a, command: 'sign', outcome: 'error', durationMs: 0, time: EPOCH + 1_000, code: 'ERR_PKCS11', returnCode: 'CKR_ARGUMENTS_BAD' });

    // a's connection drops under a signature: a fails, the signature runs on another member.
    clock.advance(500);
    h.faults[0]!.failNext('sign', 'disconnect');
    operations.length = 0;
    await signUntilHit(h, 0);
    const fault = operations.findIndex((o) => o.outcome === 'fault');
    expect(operations[fault]).toMatchObject({ member: a, command: 'sign', code: 'ERR_MEMBER_UNREACHABLE' });
    const rerun = operations.slice(fault + 1).find((o) => o.command === 'sign');
    expect(rerun).toMatchObject({ outcome: 'ok' });
    expect(rerun!.member).not.toBe(a);
    expect(failovers).toEqual(
      expect.arrayContaining([
        { type: 'memberFailed', member: a, reason: expect.stringContaining('connection lost'), time: EPOCH + 1_500 },
        { type: 'rerun', member: a, step: 'elsewhere', code: 'ERR_MEMBER_UNREACHABLE', time: EPOCH + 1_500 },
        { type: 'primaryChanged', previous: a, current: b, time: EPOCH + 1_500 },
      ]),
    );

    // The recovery loop's attempt, on the fake clock.
    clock.advance(INTERVAL_MS);
    await until(() => recoveries.some((r) => r.type === 'recovered'), 'the recovery of a');
    expect(recoveries[0]).toEqual({ type: 'attempt', member: a, attempt: 1, time: EPOCH + 2_000 });
    expect(recoveries.at(-1)).toEqual({ type: 'recovered', member: a, attempts: 1, time: EPOCH + 2_000 });
    expect(failovers.at(-1)).toEqual({ type: 'primaryChanged', previous: b, current: a, time: EPOCH + 2_000 });

    const all = JSON.stringify([operations, failovers, recoveries]);
    for (const pin of pins()) expect(all).not.toContain(pin);
  });

  it('publish only while subscribed', async () => {
    const h = await fx.openSigning();
    const channel = diagnostics.channel(OPERATION_CHANNEL);
    expect(channel.hasSubscribers).toBe(false);
    const seen: unknown[] = [];
    const fn = (m: unknown): void => void seen.push(m);
    await h.sign();
    diagnostics.subscribe(OPERATION_CHANNEL, fn);
    try {
      await h.sign();
    } finally {
      diagnostics.unsubscribe(OPERATION_CHANNEL, fn);
    }
    await h.sign();
    expect(seen).toHaveLength(1);
  });
});

describe('the logger option', () => {
  it('gets the group lines (opened, failed, recovered, closed) as a pino logger would, and never a PIN', async () => {
    const lines: { level: string; fields: Readonly<Record<string, unknown>>; message: string }[] = [];
    const at =
      (level: string) =>
      (fields: Readonly<Record<string, unknown>>, message: string): void =>
        void lines.push({ level, fields, message });
    const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
    const clock = new FakeClock(1_000);
    const h = await fx.openSigning({ extra: { clock, logger } });
    const [a] = h.group.status().members.map((m) => m.name) as [string];
    expect(lines).toContainEqual({ level: 'info', fields: { members: 3, connected: 3 }, message: 'pkcs11-ha: group opened' });

    h.faults[0]!.failNext('sign', 'disconnect');
    await signUntilHit(h, 0);
    expect(lines).toContainEqual({ level: 'warn', fields: { member: a, reason: expect.stringContaining('connection lost') }, message: 'pkcs11-ha: member failed, its traffic moves to the others' });
    expect(lines).toContainEqual({ level: 'debug', fields: { member: a, step: 'elsewhere', code: 'ERR_MEMBER_UNREACHABLE' }, message: 'pkcs11-ha: command runs again' });

    // The recovery logs the member in with its PIN: the PIN stays out of the lines.
    clock.advance(INTERVAL_MS);
    await until(() => lines.some((l) => l.message === 'pkcs11-ha: member recovered'), 'the recovery line');
    expect(lines).toContainEqual({ level: 'info', fields: { member: a, attempts: 1 }, message: 'pkcs11-ha: member recovered' });
    await h.group.close();
    expect(lines.at(-1)).toEqual({ level: 'info', fields: {}, message: 'pkcs11-ha: group closed' });

    const all = JSON.stringify(lines);
    for (const pin of pins()) expect(all).not.toContain(pin);
    expect(lines.filter((l) => l.level === 'debug' && l.message === 'pkcs11-ha: member state changed').length).toBeGreaterThanOrEqual(5);
  });

  it("gets what a member host writes to its stderr, line by line, as warnings naming the member", async () => {
    const lines: { fields: Readonly<Record<string, unknown>>; message: string }[] = [];
    const warn = (fields: Readonly<Record<string, unknown>>, message: string): void => void lines.push({ fields, message });
    const logger: Logger = { debug: () => {}, info: () => {}, warn, error: () => {} };
    const [m] = fx.bed.memberConfigs();
    // NODE_DEBUG=net makes the host's Node print a line to stderr for its socket's events.
    const member = { ...m!, module: { path: m!.module.path, env: { ...m!.module.env, NODE_DEBUG: 'net' } } };
    const group = fx.track(await HaGroup.open({ members: [member], transport: 'host', logger }));
    await until(() => lines.some((l) => l.message === 'pkcs11-ha: member host wrote to stderr'), 'a stderr line of the host');
    const line = lines.find((l) => l.message === 'pkcs11-ha: member host wrote to stderr')!;
    expect(line.fields).toEqual({ member: m!.name, line: expect.stringMatching(/^NET \d+: /) });
    await group.close();
  }, 30_000);

  it('a logger without the four levels is refused with ERR_CONFIG', async () => {
    await expect(fx.open({ extra: { logger: { info: () => {} } as never } })).rejects.toMatchObject({ code: 'ERR_CONFIG', path: 'logger', message: expect.stringContaining('debug, warn, error') });
  });
});
