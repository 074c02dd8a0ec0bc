import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { provisionKeys, standardKeys } from '../../src/testbed/provision.js';
import { randomBytes } from 'node:crypto';

describe('HaGroup over 3 SoftHSM2 tokens', () => {
  let bed: Testbed;
  let group: HaGroup;
  beforeAll(async () => {
    bed = await createTestbed({ count: 3 });
    provisionKeys(bed.tokens, standardKeys('t'));
    group = await HaGroup.open({ members: bed.memberConfigs() });
  });
  afterAll(async () => {
    await group?.close();
    await bed?.dispose();
  });

  it('encrypts on one member and decrypts on each other', async () => {
    const session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
    const [key] = await session.findObjects({ label: 't-aes' });
    expect(key).toBeDefined();
    const iv = randomBytes(12);
    const ct = await session.encrypt({ name: 'AES_GCM', iv }, key!, Buffer.from('hello'));
    const pt = await session.decrypt({ name: 'AES_GCM', iv }, key!, ct);
    expect(pt.toString()).toBe('hello');
    expect(group.status().members.map((m) => m.state.kind)).toEqual(['active', 'active', 'active']);
  });
});
