/** What `load()` of the facade means: a group config file or object, PKCS11_HA_CONFIG, or a real module. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { groupSource } from '../../src/facade/group-source.js';
import { PKCS11 } from '../../src/facade/pkcs11.js';

const dir = mkdtempSync(join(tmpdir(), 'pkcs11-ha-source-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const config = { members: [{ module: '/usr/lib/softhsm/libsofthsm2.so', token: { label: 'a' } }] };
const file = join(dir, 'group.json');
writeFileSync(file, JSON.stringify(config));

describe('groupSource', () => {
  it('takes a config file, a config object, or any path when PKCS11_HA_CONFIG names a file', () => {
    expect(groupSource(file, {})).toMatchObject({ key: `file:${file}`, config, label: 'pkcs11-ha' });
    expect(groupSource(config, { PKCS11_HA_LABEL: 'payments' })).toMatchObject({ config, label: 'payments' });
    expect(groupSource('/usr/lib/softhsm/libsofthsm2.so', { PKCS11_HA_CONFIG: file })).toMatchObject({ key: `file:${file}`, config });
    expect(groupSource('/usr/lib/softhsm/libsofthsm2.so', {})).toBeUndefined();
  });

  it("labels the token with the config's label; PKCS11_HA_LABEL overrides it", () => {
    const labelled = { ...config, label: 'orders' };
    const labelledFile = join(dir, 'labelled.json');
    writeFileSync(labelledFile, JSON.stringify(labelled));
    expect(groupSource(labelledFile, {})).toMatchObject({ label: 'orders' });
    expect(groupSource(labelled, {})).toMatchObject({ label: 'orders' });
    expect(groupSource(labelled, { PKCS11_HA_LABEL: 'payments' })).toMatchObject({ label: 'payments' });
    expect(() => groupSource({ ...config, label: 'x'.repeat(33) }, {})).toThrow(expect.objectContaining({ code: 'ERR_CONFIG' }));
    expect(() => groupSource({ ...config, label: '' }, {})).toThrow(expect.objectContaining({ code: 'ERR_CONFIG' }));
  });

  it('refuses an invalid configuration at load, with ERR_CONFIG', () => {
    expect(() => groupSource({ members: [] } as never, {})).toThrow(expect.objectContaining({ code: 'ERR_CONFIG' }));
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ "members": 1 }');
    expect(() => groupSource(bad, {})).toThrow(expect.objectContaining({ code: 'ERR_CONFIG' }));
  });
});

describe('a module path that is not a group', () => {
  it('loads the real module through pkcs11js, as without the facade', () => {
    const p = new PKCS11();
    expect(() => p.load(join(dir, 'no-such-module.so'))).toThrow(/no-such-module\.so/); // pkcs11js's dlopen error
    expect(() => new PKCS11().C_Initialize()).toThrow(/not loaded/);
  });
});
