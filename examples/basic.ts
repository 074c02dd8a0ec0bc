/**
 * Basic use: three SoftHSM2 tokens joined into one virtual slot. The security domain is
 * set up once, a key is generated through the slot (and so replicated to every member),
 * then encryption and HMAC signatures are load-balanced over the members.
 *
 *   npx tsx examples/basic.ts
 *
 * Makes its own tokens in a temporary directory (needs SoftHSM2: `apt-get install softhsm2`)
 * and removes them; exits 0 when every step checked out. In an application the imports
 * are `pkcs11-ha` and `pkcs11-ha/testbed`.
 */
import { randomBytes } from 'node:crypto';
import { HaGroup } from '../src/index.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';

const bed = await createTestbed({ count: 3, labelPrefix: 'basic' });
let group: HaGroup | undefined;
try {
  // Once per set of tokens: every member gets the same domain key, under which keys are replicated.
  await HaGroup.initDomain({ members: bed.memberConfigs() });

  // Each member runs in a member host process of its own (the default transport).
  group = await HaGroup.open({ members: bed.memberConfigs() });
  const session = group.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);

  const aes = await session.generateKey('AES_KEY_GEN', { label: 'orders', valueLen: 32, token: true, encrypt: true, decrypt: true });
  const hmac = await session.generateKey('GENERIC_SECRET_KEY_GEN', { label: 'tokens', valueLen: 32, token: true, sign: true, verify: true });
  console.log(`keys made on ${group.primary}, held by ${group.describeObject(aes)!.holders.join(', ')}`);

  const data = Buffer.from('order #1234: 3 widgets');
  for (let i = 0; i < 30; i++) {
    const iv = randomBytes(12);
    const sealed = await session.encrypt({ name: 'AES_GCM', iv }, aes, data);
    const opened = await session.decrypt({ name: 'AES_GCM', iv }, aes, sealed);
    if (!opened.equals(data)) throw new Error('AES-GCM round trip gave other bytes');
    const mac = await session.sign('SHA256_HMAC', hmac, data);
    if (!(await session.verify('SHA256_HMAC', hmac, data, mac))) throw new Error('HMAC did not verify');
  }

  for (const m of group.status().members) console.log(`${m.name}: ${m.state.kind}, served ${m.served}`);
  if (group.status().members.some((m) => m.served === 0)) throw new Error('a member served nothing: no load balancing');
  console.log('basic: ok');
} catch (error) {
  console.error('basic: FAILED:', error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  await group?.close();
  await bed.dispose();
}
