import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { acquireModule, loadedModuleCount, releaseModule } from '../../src/pkcs11/module-registry.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { provisionKeys, standardKeys } from '../../src/testbed/provision.js';

describe('module registry', () => {
  let shared: Testbed;
  beforeAll(async () => {
    shared = await createTestbed({ count: 3, layout: 'shared' });
    provisionKeys(shared.tokens, standardKeys('s'));
  });
  afterAll(async () => shared?.dispose());

  it('members that are tokens of one module share one loaded instance, released with the last', async () => {
    expect(loadedModuleCount()).toBe(0);
    const group = await HaGroup.open({ members: shared.memberConfigs(), transport: 'in-process' });
    try {
      expect(loadedModuleCount()).toBe(1);
      expect(group.status().members.map((m) => m.state.kind)).toEqual(['active', 'active', 'active']);
      const s = group.slot.openSession();
      await s.login(shared.tokens[0]!.userPin);
      const [key] = await s.findObjects({ label: 's-hmac' });
      const data = randomBytes(64);
      const before = group.status().members.map((m) => m.served);
      const macs = new Set<string>();
      for (let i = 0; i < 3; i++) macs.add((await s.sign('SHA256_HMAC', key!, data)).toString('hex'));
      expect(macs.size).toBe(1);
      expect(group.status().members.map((m, i) => m.served - before[i]!)).toEqual([1, 1, 1]);
    } finally {
      await group.close();
    }
    expect(loadedModuleCount()).toBe(0);
  });

  it('refuses to load one module file with two different environments', () => {
    const [a] = shared.tokens;
    const m = acquireModule(a!.modulePath, a!.env, 'members[0].module');
    try {
      expect(() => acquireModule(a!.modulePath, { SOFTHSM2_CONF: '/elsewhere.conf' }, 'members[1].module')).toThrow(
        expect.objectContaining({ code: 'ERR_CONFIG', path: 'members[1].module' }),
      );
      const again = acquireModule(a!.modulePath, a!.env, 'members[2].module');
      expect(again).toBe(m);
      releaseModule(again);
      expect(loadedModuleCount()).toBe(1);
    } finally {
      releaseModule(m);
    }
    expect(loadedModuleCount()).toBe(0);
  });

  it('names a missing module file in a ConfigError', () => {
    expect(() => acquireModule('/nonexistent/libnothing.so', {}, 'members[0].module')).toThrow(/members\[0\]\.module: module file not found/);
  });
});
