/**
 * Groups over real SoftHSM2 tokens whose member transports inject faults on demand
 * (FaultTransport), with all time (deadlines, heartbeats, recovery intervals) on a fake
 * clock. One test bed per test file; each test opens its own group, closed after it.
 */
import { createHmac } from 'node:crypto';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { GroupConfig, MemberConfig } from '../../src/group/group-config.js';
import type { MemberStateKind } from '../../src/member/member-state.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { createTestbed, type Testbed, type TestbedRole } from '../../src/testbed/softhsm-testbed.js';
import { provisionKeys, standardKeys, type ProvisionedKey } from '../../src/testbed/provision.js';
import type { TokenInfo, Transport } from '../../src/transport/transport.js';
import { FakeClock } from './fake-clock.js';
import { FaultTransport } from './fault-transport.js';

/** The command deadline of a fault group (fake milliseconds); the ceiling is ten times it. */
export const DEADLINE_MS = 1_000;
/** The recovery interval of a fault group (fake milliseconds). */
export const INTERVAL_MS = 500;

/** A transport whose connection is always refused: a member that stays down. */
export class RefusingTransport implements Transport {
  readonly kind = 'refusing';
  readonly pending = 0;
  connect(): Promise<TokenInfo> {
    return Promise.reject(new Error('connection refused (injected)'));
  }
  execute(): Promise<never> {
    return Promise.reject(new Error('not connected'));
  }
  onDisconnect(): void {}
  async close(): Promise<void> {}
}

/** How to open one fault group. */
export interface FaultGroupOptions {
  readonly roles?: readonly TestbedRole[];
  /** The first `count` tokens of the bed. @default all */
  readonly count?: number;
  /** Per member: a userPin replacing the configured one (undefined keeps it). */
  readonly userPins?: readonly (string | undefined)[];
  /** Members without a configured userPin: recovery then logs in with the application's PIN. */
  readonly withoutUserPins?: boolean;
  readonly extra?: Partial<GroupConfig>;
}

/** An open fault group and its handles. */
export interface FaultGroup {
  readonly group: HaGroup;
  readonly clock: FakeClock;
  /** The member's transport now (a recovery brings a new one). */
  readonly faults: FaultTransport[];
  /** While true for a member, a reconnection of it is refused. */
  readonly down: boolean[];
  /** Per member: told of the NEXT transport made for it (a reconnection), to queue faults on it. */
  readonly onReconnect: (((f: FaultTransport) => void) | undefined)[];
  /** Membership events, in order. */
  readonly events: { name: string; member?: string }[];
}

/** A fault group with a logged-in session and the bed's HMAC key. */
export interface SigningFaultGroup extends FaultGroup {
  readonly session: VirtualSession;
  readonly key: number;
  /** What {@link sign} must return. */
  readonly expectedMac: Buffer;
  /** One HMAC signature of the fixed data. */
  sign(): Promise<Buffer>;
}

/** The test bed of a file and the groups its tests open. */
export interface FaultGroupFixture {
  /** The bed (after beforeAll). */
  readonly bed: Testbed;
  /** The keys provisioned on every token, labelled `<prefix>-aes`, ... */
  readonly keys: readonly ProvisionedKey[];
  /** Opens a fault group, closed after the test. */
  open(options?: FaultGroupOptions): Promise<FaultGroup>;
  /** Opens a fault group, logs a session in and finds the HMAC key. */
  openSigning(options?: FaultGroupOptions): Promise<SigningFaultGroup>;
  /** Closes `group` after the test (for groups opened some other way). */
  track<G extends HaGroup>(group: G): G;
  /** Runs `fn` after the test, before the groups close. */
  cleanup(fn: () => void): void;
}

/** The states of a group's members, in member order. */
export const states = (group: HaGroup): MemberStateKind[] => group.status().members.map((m) => m.state.kind);

const SIGNED = Buffer.from('failover');
const MEMBERSHIP_EVENTS = ['memberFailed', 'memberRecovered', 'recoveryFailed', 'standbyPromoted', 'standbyDemoted', 'primaryChanged'] as const;

/**
 * Registers the hooks of a test file: a bed of `count` tokens holding the standard keys
 * (and a domain key when `domain`), groups closed after each test, the bed disposed at the end.
 *
 * @example
 * const fx = faultGroups({ prefix: 'f' });
 * it('...', async () => {
 *   const h = await fx.openSigning();
 *   h.faults[0]!.failNext('sign', 'hang');
 * });
 */
export function faultGroups(options: { readonly prefix: string; readonly count?: number; readonly domain?: boolean }): FaultGroupFixture {
  const keys = standardKeys(options.prefix);
  const hmac = keys.find((k) => k.kind === 'hmac') as { value: Buffer };
  const expectedMac = createHmac('sha256', hmac.value).update(SIGNED).digest();
  let bed: Testbed | undefined;
  const groups: HaGroup[] = [];
  const cleanups: (() => void)[] = [];

  beforeAll(async () => {
    bed = await createTestbed({ count: options.count ?? 3 });
    provisionKeys(bed.tokens, keys);
    if (options.domain) await HaGroup.initDomain({ members: bed.memberConfigs(), transport: 'in-process' });
  }, 60_000);
  afterEach(async () => {
    for (const c of cleanups.splice(0)) c();
    await Promise.allSettled(groups.splice(0).map((g) => g.close()));
  });
  afterAll(async () => {
    await bed?.dispose();
  });

  const fixture: FaultGroupFixture = {
    get bed(): Testbed {
      if (bed === undefined) throw new Error('the test bed is made in beforeAll');
      return bed;
    },
    keys,
    track(group) {
      groups.push(group);
      return group;
    },
    cleanup(fn) {
      cleanups.push(fn);
    },
    async open(o: FaultGroupOptions = {}): Promise<FaultGroup> {
      const clock = new FakeClock(1_000);
      const faults: FaultTransport[] = [];
      const down: boolean[] = [];
      const onReconnect: (((f: FaultTransport) => void) | undefined)[] = [];
      const members = fixture.bed
        .memberConfigs(o.roles ? { roles: o.roles } : undefined)
        .slice(0, o.count)
        .map((m, i): MemberConfig => {
          if (o.withoutUserPins) {
            const { userPin: _dropped, ...rest } = m;
            return rest;
          }
          const pin = o.userPins?.[i];
          return pin === undefined ? m : { ...m, userPin: pin };
        });
      const group = fixture.track(
        await HaGroup.open({
          members,
          clock,
          transport: 'in-process',
          deadlineMs: DEADLINE_MS,
          ceilingMs: 10 * DEADLINE_MS,
          recovery: { intervalMs: INTERVAL_MS },
          transportFactory: (m) => {
            if (down[m.index]) return new RefusingTransport();
            const f = FaultTransport.inProcess(m);
            const hook = onReconnect[m.index];
            if (faults[m.index] !== undefined && hook !== undefined) {
              onReconnect[m.index] = undefined;
              hook(f);
            }
            return (faults[m.index] = f);
          },
          ...o.extra,
        }),
      );
      const events: { name: string; member?: string }[] = [];
      for (const name of MEMBERSHIP_EVENTS) {
        group.on(name, (e: object) => events.push({ name, ...('member' in e && typeof e.member === 'string' ? { member: e.member } : {}) }));
      }
      return { group, clock, faults, down, onReconnect, events };
    },
    async openSigning(o?: FaultGroupOptions): Promise<SigningFaultGroup> {
      const h = await fixture.open(o);
      const session = h.group.slot.openSession();
      await session.login(fixture.bed.tokens[0]!.userPin);
      const [key] = await session.findObjects({ label: `${options.prefix}-hmac` });
      expect(key).toBeDefined();
      return { ...h, session, key: key!, expectedMac, sign: () => session.sign('SHA256_HMAC', key!, SIGNED) };
    },
  };
  return fixture;
}
