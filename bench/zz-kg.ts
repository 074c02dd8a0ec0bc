import { HaGroup } from '../src/index.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
const P256 = Buffer.from('06082a8648ce3d030107', 'hex');
const pub = { class: 'publicKey', keyType: 'ec', ecParams: P256, token: false, verify: true, label: 'bench-ephemeral' } as const;
const priv = { class: 'privateKey', keyType: 'ec', token: false, private: true, sensitive: true, sign: true, label: 'bench-ephemeral' } as const;
const bed = await createTestbed({ count: 1, labelPrefix: 'zz' });
const g = await HaGroup.open({ members: bed.memberConfigs(), transport: 'in-process' });
const sessions = Array.from({ length: 16 }, () => g.slot.openSession());
await sessions[0]!.login(bed.tokens[0]!.userPin);
const ms = Number(process.env.MS ?? 4000);
let n = 0;
const end = Date.now() + ms;
const cpu0 = process.cpuUsage();
await Promise.all(sessions.map(async (s) => {
  while (Date.now() < end) {
    const pair = await s.generateKeyPair('EC_KEY_PAIR_GEN', pub as never, priv as never);
    await s.destroyObject(pair.privateKey);
    await s.destroyObject(pair.publicKey);
    n++;
  }
}));
const cpu = process.cpuUsage(cpu0);
console.log(`${(n / (ms / 1000)).toFixed(0)}/s, cpu ${(((cpu.user + cpu.system) / n)).toFixed(0)} us/iter`);
await g.close();
await bed.dispose();
