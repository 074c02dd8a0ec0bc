/**
 * Failover events: while HMAC signatures run 8 at a time, one member host is killed
 * (SIGKILL by its pid) and another one frozen (SIGSTOP: a hung host). The application sees
 * no failed operation; the group's events tell the story: the killed member fails at once
 * (its connection drops), the frozen one when its deadline passes (no answer and no
 * heartbeat for `deadlineMs`), after which the group kills it. Background recovery starts a
 * fresh host for each, with a new pid, and the members serve again.
 *
 *   npx tsx examples/failover-events.ts
 *
 * Makes its own SoftHSM2 tokens in a temporary directory and removes them; exits 0 when no
 * operation failed and both members came back. In an application the imports are
 * `pkcs11-ha`, `pkcs11-ha/testbed` and (for the pid) `pkcs11-ha/testing`.
 */
import { HaGroup, HostTransport } from '../src/index.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../src/testing.js';

const t0 = performance.now();
const at = (): string => `[${((performance.now() - t0) / 1000).toFixed(2).padStart(5)} s]`;

/** The pid of the member host serving `name` now (a recovered member runs on a new host). */
function hostPid(group: HaGroup, name: string): number {
  const shown = group.status().members.find((m) => m.name === name) as { pid?: unknown } | undefined;
  if (typeof shown?.pid === 'number') return shown.pid;
  const member = internalsOf(group).members.find((m) => m.name === name);
  const transport = member?.transport;
  if (!(transport instanceof HostTransport) || transport.pid === undefined) throw new Error(`${name} runs on no member host`);
  return transport.pid;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `done()` holds, polling every 50 ms, for at most `ms`. */
async function until(done: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const bed = await createTestbed({ count: 3, labelPrefix: 'events' });
let group: HaGroup | undefined;
try {
  await HaGroup.initDomain({ members: bed.memberConfigs() });
  group = await HaGroup.open({
    members: bed.memberConfigs(),
    // Short timings so that the example runs in seconds (defaults: 20 s, 1 s, 5 s).
    deadlineMs: 1500,
    heartbeatIntervalMs: 250,
    recovery: { intervalMs: 500 },
  });
  const g = group;
  for (const name of ['memberFailed', 'recoveryFailed', 'memberRecovered', 'primaryChanged'] as const) {
    g.on(name, (e: object) => console.log(`${at()} ${name} ${JSON.stringify(e)}`));
  }

  const session = g.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);
  const key = await session.generateKey('GENERIC_SECRET_KEY_GEN', { label: 'events-hmac', valueLen: 32, token: true, sign: true, verify: true });
  const data = Buffer.from('failover events');
  const expected = await session.sign('SHA256_HMAC', key, data);

  let running = true;
  let ok = 0;
  const failures: string[] = [];
  const lane = async (): Promise<void> => {
    while (running) {
      try {
        const mac = await session.sign('SHA256_HMAC', key, data);
        if (mac.equals(expected)) ok++;
        else failures.push('a wrong MAC');
      } catch (error) {
        failures.push(error instanceof Error ? error.message : String(error));
      }
    }
  };
  const lanes = Array.from({ length: 8 }, lane);
  const signed = async (more: number): Promise<void> => {
    const target = ok + more;
    await until(() => ok >= target || failures.length > 0, `${more} more signatures`);
  };

  try {
    await signed(300);
    const [, second, third] = g.status().members.map((m) => m.name);
    const killed = hostPid(g, second!);
    console.log(`${at()} SIGKILL ${second}'s host (pid ${killed})`);
    process.kill(killed, 'SIGKILL');
    await signed(300);
    await until(() => g.status().members.every((m) => m.state.kind === 'active'), `${second} to recover`);
    console.log(`${at()} ${second} serves again on a new host (pid ${hostPid(g, second!)})`);

    const frozen = hostPid(g, third!);
    console.log(`${at()} SIGSTOP ${third}'s host (pid ${frozen}): it hangs, its heartbeats stop`);
    process.kill(frozen, 'SIGSTOP');
    await until(() => g.status().members.find((m) => m.name === third)?.state.kind !== 'active', `${third} to fail`);
    await until(() => !alive(frozen), `the hung host ${frozen} to be killed`, 10_000);
    console.log(`${at()} the hung host (pid ${frozen}) is gone: the group killed it`);
    await until(() => g.status().members.every((m) => m.state.kind === 'active'), `${third} to recover`);
    console.log(`${at()} ${third} serves again on a new host (pid ${hostPid(g, third!)})`);
    await signed(300);
  } finally {
    running = false;
    await Promise.all(lanes);
  }

  // Closing the group changes members' states too: those events are not part of the story.
  g.removeAllListeners();
  console.log(`${at()} ${ok} signatures, ${failures.length} failed`);
  for (const m of g.status().members) console.log(`  ${m.name}: ${m.state.kind}, served ${m.served}, taken out ${m.failures} time(s)`);
  if (failures.length > 0) throw new Error(`operations failed: ${failures.slice(0, 3).join('; ')}`);
  console.log('failover-events: ok');
} catch (error) {
  console.error('failover-events: FAILED:', error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  await group?.close();
  await bed.dispose();
}
