/**
 * A standby member for disaster recovery, as with a remote data centre: two active members
 * take the load, a third is `role: 'standby'`. The standby receives every key as it is made
 * but serves nothing while an active member serves. When both active member hosts are
 * killed, the standby is promoted and the application goes on (keys made meanwhile too);
 * when the active members are recovered and resynchronised (they get what they missed), the
 * standby is demoted and idle again.
 *
 *   npx tsx examples/standby.ts
 *
 * Makes its own SoftHSM2 tokens in a temporary directory and removes them; exits 0 when
 * every step checked out. In an application the imports are `pkcs11-ha`,
 * `pkcs11-ha/testbed` and (for the pids) `pkcs11-ha/testing`.
 */
import { randomBytes } from 'node:crypto';
import { HaGroup, HostTransport } from '../src/index.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../src/testing.js';

/** The pid of the member host serving `name` now. */
function hostPid(group: HaGroup, name: string): number {
  const shown = group.status().members.find((m) => m.name === name) as { pid?: unknown } | undefined;
  if (typeof shown?.pid === 'number') return shown.pid;
  const transport = internalsOf(group).members.find((m) => m.name === name)?.transport;
  if (!(transport instanceof HostTransport) || transport.pid === undefined) throw new Error(`${name} runs on no member host`);
  return transport.pid;
}

async function until(done: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(what);
  console.log(`  ok: ${what}`);
}

const bed = await createTestbed({ count: 3, labelPrefix: 'dr' });
let group: HaGroup | undefined;
try {
  const members = bed.memberConfigs({ roles: ['active', 'active', 'standby'] });
  const [a, b, standby] = members.map((m) => m.name) as [string, string, string];
  await HaGroup.initDomain({ members });
  // No background recovery here, so that the outage lasts until we recover by hand.
  group = await HaGroup.open({ members, recovery: { maxAttempts: 0 } });
  const g = group;
  for (const name of ['memberFailed', 'standbyPromoted', 'standbyDemoted', 'primaryChanged', 'memberRecovered'] as const) {
    g.on(name, (e: object) => console.log(`event ${name} ${JSON.stringify(e)}`));
  }
  g.on('resyncProgress', (e) => e.done === e.total && console.log(`event resyncProgress ${e.member} settled ${e.total} item(s)`));
  const served = (name: string): number => g.status().members.find((m) => m.name === name)!.served;

  const session = g.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);
  const key = await session.generateKey('AES_KEY_GEN', { label: 'dr-master', valueLen: 32, token: true, encrypt: true, decrypt: true });
  check(g.describeObject(key)!.holders.includes(standby), `the key was replicated to the standby ${standby}`);

  const roundTrips = async (n: number, k = key): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const iv = randomBytes(12);
      const data = randomBytes(64);
      const out = await session.decrypt({ name: 'AES_GCM', iv }, k, await session.encrypt({ name: 'AES_GCM', iv }, k, data));
      if (!out.equals(data)) throw new Error('AES-GCM round trip gave other bytes');
    }
  };
  const idle = served(standby);
  await roundTrips(50);
  check(served(standby) === idle, `the standby served nothing while ${a} and ${b} served`);

  console.log(`disaster: both active member hosts killed`);
  process.kill(hostPid(g, a), 'SIGKILL');
  process.kill(hostPid(g, b), 'SIGKILL');
  await until(() => g.primary === standby, 'the standby to be promoted');
  const before = served(standby);
  await roundTrips(50);
  check(served(standby) >= before + 100, `the promoted standby served all 100 operations`);
  const late = await session.generateKey('AES_KEY_GEN', { label: 'dr-rekeyed', valueLen: 32, token: true, encrypt: true, decrypt: true });
  check(g.status().owed[a] === 1 && g.status().owed[b] === 1, `a key made during the outage is owed to ${a} and ${b}`);

  console.log(`recovery: ${a} and ${b} reconnected and resynchronised`);
  check((await g.recover(a)) && (await g.recover(b)), 'both active members serve again');
  check(g.primary === a, `${a} is primary again and the standby demoted`);
  check(g.describeObject(late)!.holders.length === 3 && Object.keys(g.status().owed).length === 0, 'the key made during the outage is on every member; nothing owed');
  const after = served(standby);
  await roundTrips(50, late);
  check(served(standby) === after, 'the standby is idle again');
  console.log('standby: ok');
} catch (error) {
  console.error('standby: FAILED:', error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  group?.removeAllListeners();
  await group?.close();
  await bed.dispose();
}
