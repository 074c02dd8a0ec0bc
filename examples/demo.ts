/**
 * The demo: three SoftHSM2 tokens made on the spot, joined into one virtual slot, and a
 * short mixed load over it. Prints what each member served.
 *
 *   npm run demo            (options: --members N, --ops N, --concurrency N)
 */
import { createHash, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { HaGroup } from '../src/index.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { provisionKeys, standardKeys } from '../src/testbed/provision.js';

const { values } = parseArgs({
  options: {
    members: { type: 'string', default: '3' },
    ops: { type: 'string', default: '6000' },
    concurrency: { type: 'string', default: '16' },
  },
});
const memberCount = Number(values.members);
const totalOps = Number(values.ops);
const concurrency = Number(values.concurrency);
for (const [name, v] of [['members', memberCount], ['ops', totalOps], ['concurrency', concurrency]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(values[name])}`);
}

console.log(`Creating ${memberCount} SoftHSM2 tokens ...`);
const bed = await createTestbed({ count: memberCount, labelPrefix: 'demo-hsm' });
try {
  // Until key replication lands, the same key is imported on every token.
  provisionKeys(bed.tokens, standardKeys('demo'));
  const group = await HaGroup.open({ members: bed.memberConfigs() });
  group.on('memberStateChanged', (e) => console.log(`  event: ${e.member} ${e.previous} -> ${e.current.kind}${e.reason ? ` (${e.reason})` : ''}`));
  try {
    const session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
    const [aes] = await session.findObjects({ label: 'demo-aes' });
    const [hmac] = await session.findObjects({ label: 'demo-hmac' });
    const [ec] = await session.findObjects({ label: 'demo-ec', class: 'privateKey' });
    if (aes === undefined || hmac === undefined || ec === undefined) throw new Error('demo keys not found');

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
      () => session.sign('ECDSA', ec, digest),
    ];
    console.log(`Running ${totalOps} tasks (AES-GCM 1 KiB encrypt + decrypt, HMAC-SHA256, ECDSA P-256 sign) with ${concurrency} callers ...`);
    let next = 0;
    let failed = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < totalOps) {
          const op = operations[next++ % operations.length]!;
          await op().catch(() => failed++);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const status = group.status();
    const servedNow = status.members.map((m, i) => m.served - before[i]!);
    const total = servedNow.reduce((a, b) => a + b, 0);
    console.log(`\n${total} PKCS#11 operations in ${seconds.toFixed(2)} s (${Math.round(total / seconds)} ops/s), ${failed} failed; primary: ${status.primary}\n`);
    console.log('member        state     served   share');
    status.members.forEach((m, i) => {
      console.log(`${m.name.padEnd(13)} ${m.state.kind.padEnd(9)} ${String(servedNow[i]).padStart(6)}   ${((100 * servedNow[i]!) / total).toFixed(1).padStart(5)}%`);
    });
    if (failed > 0) process.exitCode = 1;
  } finally {
    group.removeAllListeners();
    await group.close();
  }
} finally {
  await bed.dispose();
}
