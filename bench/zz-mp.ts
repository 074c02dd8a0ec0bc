import { randomBytes } from 'node:crypto';
import { HaGroup } from '../src/index.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { provisionKeys, standardKeys } from '../src/testbed/provision.js';
const PART = 64 * 1024;
const DATA = randomBytes(1 << 20);
const PARTS = Array.from({ length: 16 }, (_, i) => DATA.subarray(i * PART, (i + 1) * PART));
const IV = randomBytes(16);
const bed = await createTestbed({ count: 1, labelPrefix: 'zz' });
provisionKeys(bed.tokens, standardKeys('mpz'));
const g = await HaGroup.open({ members: bed.memberConfigs(), transport: 'in-process' });
const s = g.slot.openSession();
await s.login(bed.tokens[0]!.userPin);
const [key] = await s.findObjects({ label: 'mpz-aes' });
const op = process.env.OP ?? 'sha';
const out = Buffer.alloc((1 << 20) + 1024);
const ms = Number(process.env.MS ?? 4000);
let n = 0;
const end = Date.now() + ms;
while (Date.now() < end) {
  if (op === 'sha') {
    await s.digestInit('SHA256');
    for (const part of PARTS) await s.digestUpdate(part);
    await s.digestFinal();
  } else {
    let at = 0;
    await s.encryptInit({ name: 'AES_CBC', iv: IV }, key!);
    for (const part of PARTS) at += (await s.encryptUpdate(part, out.subarray(at))).length;
    at += (await s.encryptFinal()).copy(out, at);
  }
  n++;
}
console.log(`${op} ${(n / (ms / 1000)).toFixed(0)}/s`);
await g.close();
await bed.dispose();
