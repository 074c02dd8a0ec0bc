/**
 * Metrics, diagnostics channels and logs: a group on three SoftHSM2 tokens with Prometheus
 * metrics in a registry of its own, a logger, and a `node:diagnostics_channel` subscriber;
 * HMAC signatures, one member host killed by the pid `status()` shows, and the failover as
 * the metrics count it.
 *
 *   npx tsx examples/metrics.ts
 *
 * Needs SoftHSM2 (`apt-get install softhsm2`) and prom-client (an optional peer dependency:
 * `npm install prom-client`). Makes its own tokens in a temporary directory and removes
 * them; exits 0 when the failover was counted. In an application the imports are
 * `pkcs11-ha` and `pkcs11-ha/testbed`.
 */
import diagnostics from 'node:diagnostics_channel';
import { Registry } from 'prom-client';
import { HaGroup, OPERATION_CHANNEL, type Logger, type OperationMessage } from '../src/index.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';

// A pino logger fits here; this one prints the info and warn lines.
const print = (level: string) => (fields: object, message: string) => console.log(`[${level}] ${message} ${JSON.stringify(fields)}`);
const logger: Logger = { debug: () => {}, info: print('info'), warn: print('warn'), error: print('error') };

// What an APM tool would do: count the operations published on the channel.
let published = 0;
const onOperation = (message: unknown): void => {
  if ((message as OperationMessage).command === 'sign') published++;
};
diagnostics.subscribe(OPERATION_CHANNEL, onOperation);

const bed = await createTestbed({ count: 3, labelPrefix: 'metrics' });
const registry = new Registry();
let group: HaGroup | undefined;
try {
  await HaGroup.initDomain({ members: bed.memberConfigs(), transport: 'in-process' });
  // Recovery far off, so that the killed member stays failed while the example looks at it.
  group = await HaGroup.open({ members: bed.memberConfigs(), metrics: { registry }, logger, recovery: { intervalMs: 60_000 } });
  const session = group.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);
  const key = await session.generateKey('GENERIC_SECRET_KEY_GEN', { label: 'tokens', valueLen: 32, token: true, sign: true, verify: true });
  const data = Buffer.from('metrics example');
  const signMany = (n: number) => Promise.all(Array.from({ length: n }, () => session.sign('SHA256_HMAC', key, data)));
  await signMany(60);

  // Kill the third member's host process, by the pid status() shows.
  const victim = group.status().members[2]!;
  const failed = new Promise((resolve) => group!.once('memberFailed', resolve));
  process.kill(victim.pid!, 'SIGKILL');
  await failed;
  await signMany(60);

  const text = await registry.metrics();
  const shown = text.split('\n').filter((line) => /^pkcs11_ha_(operations_total\{command="sign"|failovers_total|member_state\{.*state="failed"\} 1|primary\{.*\} 1)/.test(line));
  console.log(shown.join('\n'));
  console.log(`operations published on ${OPERATION_CHANNEL}: ${published} signatures`);
  if (!text.includes(`pkcs11_ha_failovers_total{member="${victim.name}"} 1`)) throw new Error('the failover was not counted');
  if (published < 120) throw new Error(`only ${published} signatures were published on the channel`);
  console.log('metrics: ok');
} catch (error) {
  console.error('metrics: FAILED:', error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  diagnostics.unsubscribe(OPERATION_CHANNEL, onOperation);
  await group?.close();
  await bed.dispose();
}
