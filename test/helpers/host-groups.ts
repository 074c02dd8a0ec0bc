/**
 * The fixture of tests that run groups on real member host processes and kill or freeze
 * those hosts: three SoftHSM2 tokens holding the given keys, the group of each test closed
 * after it, and no host process left frozen.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { GroupConfig } from '../../src/group/group-config.js';
import { HaGroup } from '../../src/group/ha-group.js';
import { provisionKeys, type ProvisionedKey } from '../../src/testbed/provision.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';

export interface HostGroups {
  /** The test bed: three tokens, each holding the keys. */
  readonly bed: Testbed;
  /** Opens a group; it is closed after the test. */
  open(config: GroupConfig): Promise<HaGroup>;
  /** Freezes a host process (SIGSTOP); it is killed (SIGKILL) after the test. */
  freeze(pid: number): void;
}

/**
 * Registers, in the calling scope, the hooks that create the test bed (and, with
 * `initDomain`, initialise its domain) before the tests, close each test's group and
 * kill the hosts it froze after it, and dispose of the test bed at the end.
 */
export function hostGroups(keys: readonly ProvisionedKey[], options: { initDomain?: boolean } = {}): HostGroups {
  let bed: Testbed | undefined;
  let group: HaGroup | undefined;
  /** Host processes frozen by the test, to be sure none is left frozen. */
  const stopped = new Set<number>();

  beforeAll(async () => {
    bed = await createTestbed({ count: 3 });
    provisionKeys(bed.tokens, keys);
    if (options.initDomain) await HaGroup.initDomain({ members: bed.memberConfigs() });
  }, 60_000);
  afterEach(async () => {
    await group?.close();
    group = undefined;
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone: close() killed it
      }
    }
    stopped.clear();
  });
  afterAll(async () => {
    await bed?.dispose();
  });

  return {
    get bed(): Testbed {
      if (!bed) throw new Error('the test bed is created in beforeAll');
      return bed;
    },
    async open(config) {
      return (group = await HaGroup.open(config));
    },
    freeze(pid) {
      stopped.add(pid);
      process.kill(pid, 'SIGSTOP');
    },
  };
}
