/**
 * The demo: SoftHSM2 tokens made on the spot, given one security domain, joined into one
 * virtual slot behind member host processes. Keys are generated through the slot (and so
 * replicated to every member), then a mixed load runs while one member host is killed:
 * the load sees no error, the member is failed at once, recovered in the background and
 * resynchronised. Prints the events and what each member served.
 *
 *   npm run demo            (options: --members N, --ops N, --concurrency N, --no-kill)
 */
import { createHash, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { HaGroup, HostTransport } from '../src/index.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../src/testing.js';

const { values } = parseArgs({
  options: {
    members: { type: 'string', default: '3' },
    ops: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '16' },
    'no-kill': { type: 'boolean', default: false },
  },
});
const memberCount = Number(values.members);
const totalOps = Number(values.ops);
const concurrency = Number(values.concurrency);
for (const [name, v] of [['members', memberCount], ['ops', totalOps], ['concurrency', concurrency]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(values[name])}`);
}
const kill = !values['no-kill'] && memberCount > 1;
const t0 = performance.now();
const at = (): string => `[${((performance.now() - t0) / 1000).toFixed(2).padStart(6)} s]`;

console.log(`${at()} creating ${memberCount} SoftHSM2 tokens ...`);
const bed = await createTestbed({ count: memberCount, labelPrefix: 'demo-hsm' });
try {
  const init = await HaGroup.initDomain({ members: bed.memberConfigs() });
  console.log(`${at()} security domain: one AES-256 domain key on every member (check value ${init.checkValue.slice(0, 16)}...)`);
  // Member hosts (the default transport): a crash or hang of one module cannot take the demo down.
  const group = await HaGroup.open({ members: bed.memberConfigs(), recovery: { intervalMs: 500 } });
  for (const name of ['memberFailed', 'memberRecovered', 'primaryChanged', 'standbyPromoted', 'standbyDemoted'] as const) {
    group.on(name, (e: object) => console.log(`${at()} event ${name}: ${JSON.stringify(e)}`));
  }
  group.on('resyncProgress', (e) => e.done === e.total && console.log(`${at()} event resyncProgress: ${e.member} settled ${e.total} owed item(s)`));
  try {
    const session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
    // Key management runs on the primary and is replicated (wrapped under the domain key) before it returns.
    const aes = await session.generateKey('AES_KEY_GEN', { label: 'demo-aes', valueLen: 32, token: true, encrypt: true, decrypt: true });
    const hmac = await session.generateKey('GENERIC_SECRET_KEY_GEN', { label: 'demo-hmac', valueLen: 32, token: true, sign: true, verify: true });
    const ec = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label: 'demo-ec', curve: 'P-256', token: true, verify: true }, { label: 'demo-ec', token: true, sign: true });
    console.log(`${at()} generated AES-256, HMAC and EC P-256 keys on ${group.primary}; held by ${group.describeObject(ec.privateKey)!.holders.join(', ')}`);

    const before = group.status().members.map((m) => m.served);
    const payload = randomBytes(1024);
    const digest = createHash('sha256').update(payload).digest();
    const operations = [
      async () => {
        const iv = randomBytes(12);
        const ct = await session.encrypt({ name: 'AES_GCM', iv }, aes, payload);
        const pt = await session.decrypt({ name: 'AES_GCM', iv }, aes, ct);
        if (!pt.equals(payload)) throw new Error('AES-GCM round trip mismatch');
      },
      () => session.sign('SHA256_HMAC', hmac, payload),
      async () => {
        const sig = await session.sign('ECDSA', ec.privateKey, digest);
        if (!(await session.verify('ECDSA', ec.publicKey, digest, sig))) throw new Error('ECDSA signature did not verify');
      },
    ];
    const victimIndex = memberCount - 1;
    const victim = internalsOf(group).members[victimIndex]!;
    console.log(`${at()} running ${totalOps} tasks (AES-GCM 1 KiB round trips, HMAC-SHA256, ECDSA P-256 sign + verify) with ${concurrency} callers${kill ? `; ${victim.name}'s host is killed a fifth of the way in` : ''} ...`);
    let next = 0;
    let done = 0;
    let failed = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < totalOps) {
          const op = operations[next++ % operations.length]!;
          await op().catch((error: unknown) => {
            failed++;
            console.log(`${at()} operation failed: ${(error as Error).message}`);
          });
          if (++done === Math.floor(totalOps / 5) && kill) {
            const pid = victim.transport instanceof HostTransport ? victim.transport.pid : undefined;
            if (pid !== undefined) {
              console.log(`${at()} SIGKILL ${victim.name}'s member host (pid ${pid})`);
              process.kill(pid, 'SIGKILL');
            }
          }
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    if (kill) {
      // Bounded wait for the background recovery, so the table shows the member back.
      for (let i = 0; i < 100 && !victim.serving; i++) await new Promise((r) => setTimeout(r, 100));
    }
    const status = group.status();
    const servedNow = status.members.map((m, i) => m.served - before[i]!);
    const total = servedNow.reduce((a, b) => a + b, 0);
    console.log(`\n${total} PKCS#11 operations in ${seconds.toFixed(2)} s (${Math.round(total / seconds)} ops/s), ${failed} failed; primary: ${status.primary}\n`);
    console.log('member        state     failures  served   share');
    status.members.forEach((m, i) => {
      console.log(
        `${m.name.padEnd(13)} ${m.state.kind.padEnd(9)} ${String(m.failures).padStart(8)}  ${String(servedNow[i]).padStart(6)}   ${((100 * servedNow[i]!) / total).toFixed(1).padStart(5)}%`,
      );
    });
    if (failed > 0) process.exitCode = 1;
  } finally {
    group.removeAllListeners();
    await group.close();
  }
} finally {
  await bed.dispose();
}
