/**
 * The chaos run's injection hook in the member host (src/host/injected-faults.ts): off
 * unless the member's module env names a control file; on SIGUSR2 the host answers chosen
 * return codes as its module would, or slows down.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { INJECT_FAULTS_ENV } from '../../src/host/injected-faults.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';
import { hostPid } from '../helpers/host-pid.js';
import { until } from '../helpers/until.js';

describe('injected faults in a member host', () => {
  let bed: Testbed;
  let group: HaGroup;
  let control: string;

  beforeAll(async () => {
    bed = await createTestbed({ count: 2, labelPrefix: 'inject' });
    control = join(bed.dir, 'faults.json');
    const members = bed.memberConfigs().map((m, i) => (i === 0 ? { ...m, module: { path: m.module.path, env: { ...m.module.env, [INJECT_FAULTS_ENV]: control } } } : m));
    group = await HaGroup.open({ members, recovery: { maxAttempts: 0 } });
  }, 60_000);
  afterAll(async () => {
    await group?.close();
    await bed?.dispose();
  });

  it('slows every command down, then stops when cleared', async () => {
    const session = group.slot.openSession();
    const digestOn0 = async (): Promise<number> => {
      const start = performance.now();
      // Only member 0 serves while member 1 is set standby: the digest must go there.
      await session.digest('SHA256', Buffer.from('x'));
      return performance.now() - start;
    };
    group.setStandby(bed.tokens[1]!.label, true);
    try {
      writeFileSync(control, JSON.stringify({ delayMs: 300 }));
      process.kill(hostPid(group, 0), 'SIGUSR2');
      await until(async () => (await digestOn0()) >= 300, 'the injected delay');
      writeFileSync(control, JSON.stringify({}));
      process.kill(hostPid(group, 0), 'SIGUSR2');
      await until(async () => (await digestOn0()) < 250, 'the delay cleared');
    } finally {
      group.setStandby(bed.tokens[1]!.label, false);
    }
  });

  it('answers a member-class code as the module would: the member is failed and the call served by the other', async () => {
    const session = group.slot.openSession();
    writeFileSync(control, JSON.stringify({ error: { rv: pkcs11js.CKR_DEVICE_ERROR, ops: ['digest'], count: 5 } }));
    process.kill(hostPid(group, 0), 'SIGUSR2');
    const member0 = internalsOf(group).members[0]!;
    // Least-busy round-robin: within a few calls one lands on member 0 and fails it.
    for (let i = 0; i < 10 && member0.serving; i++) {
      expect(await session.digest('SHA256', Buffer.from('abc'))).toHaveLength(32);
    }
    expect(member0.state).toMatchObject({ kind: 'failed' });
    expect((member0.state as { reason: string }).reason).toMatch(/CKR_DEVICE_ERROR/);
  });
});
