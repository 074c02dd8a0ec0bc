/**
 * The fixture of the facade's tests: three SoftHSM2 tokens with a domain (test/helpers
 * host-groups), the group config a facade `PKCS11` loads (no SO PIN in it), and the member
 * host processes that the facade worker started (children of this process).
 */
import { execFileSync } from 'node:child_process';
import * as pkcs11js from 'pkcs11js';
import { expect } from 'vitest';
import type { GroupFileConfig } from '../../src/group/group-config.js';
import { standardKeys, type ProvisionedKey } from '../../src/testbed/provision.js';
import { hostGroups, type HostGroups } from '../helpers/host-groups.js';

/** The test bed, and the config of its group for the facade. */
export interface FacadeFixture {
  readonly groups: HostGroups;
  /** The group config: three members on member hosts (the default transport). */
  config(extra?: Partial<GroupFileConfig>): GroupFileConfig;
  readonly userPin: string;
  /** The keys every token holds (their values, to check results against node:crypto). */
  readonly keys: readonly ProvisionedKey[];
}

/** Registers the hooks of a three-token bed with a domain and the standard keys (`<prefix>-aes`, `-hmac`, `-ec`, `-rsa`). */
export function facadeFixture(prefix = 'f'): FacadeFixture {
  const keys = standardKeys(prefix);
  const groups = hostGroups(keys, { initDomain: true });
  return {
    groups,
    keys,
    config: (extra = {}) => ({ members: groups.bed.memberConfigs().map(({ soPin: _so, ...m }) => m), ...extra }),
    get userPin() {
      return groups.bed.tokens[0]!.userPin;
    },
  };
}

/** The value of a provisioned secret key. */
export function secretValue(keys: readonly ProvisionedKey[], kind: 'aes' | 'hmac'): Buffer {
  const key = keys.find((k) => k.kind === kind);
  if (key === undefined || (key.kind !== 'aes' && key.kind !== 'hmac')) throw new Error(`no ${kind} key`);
  return key.value;
}

/** Member host processes that are children of this process (the facade worker spawns them from here). */
export function memberHostPids(): number[] {
  const out = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((line) => /member-host\.(?:ts|js)/.test(line))
    .map((line) => Number.parseInt(line.trim(), 10));
}

/** The PKCS#11 error a call throws: pkcs11js's own class, its message the CKR_* name. */
export function ckrOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(pkcs11js.Pkcs11Error);
    const e = error as pkcs11js.Pkcs11Error;
    expect(e.code).toBe((pkcs11js as unknown as Record<string, number>)[e.message]);
    return e.message;
  }
  throw new Error('no error');
}

/** The CKR_* name of the pkcs11js error a promise form rejects with. */
export async function ckrOfAsync(run: () => Promise<unknown>): Promise<string> {
  const error = await run().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(pkcs11js.Pkcs11Error);
  return (error as pkcs11js.Pkcs11Error).message;
}

/** The callback form: resolves to what the callback got. */
export function viaCallback<T>(call: (cb: (error: Error | null, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => call((error, value) => (error ? reject(error) : resolve(value))));
}
