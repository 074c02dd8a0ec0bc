/**
 * The file part of the group configuration: the committed JSON schema is what the zod
 * definition gives (so they cannot drift), `$schema` is accepted, PINs come inline, from a
 * variable or from a file and never show, and a client id spreads primaries over members.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/cli/config-file.js';
import { ConfigError } from '../../src/errors/ha-error.js';
import { configJsonSchemaText } from '../../src/group/config-schema.js';
import { memberOrderShift, resolveGroupConfig, type GroupConfig, type GroupFileConfig } from '../../src/group/group-config.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PIN = '98765432';
const dir = mkdtempSync(join(tmpdir(), 'pkcs11-ha-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const member = (label: string, extra: object = {}) => ({ module: '/opt/hsm/libsofthsm2.so', token: { label }, ...extra });

function refusal(config: unknown): ConfigError {
  try {
    resolveGroupConfig(config as GroupConfig);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('accepted a bad config');
}

describe('the JSON schema', () => {
  it('is committed as npm run schema writes it (run `npm run schema` after changing src/group/config-schema.ts)', () => {
    expect(readFileSync(join(ROOT, 'schema', 'pkcs11-ha.config.schema.json'), 'utf8')).toBe(configJsonSchemaText());
  });

  it('is shipped: in "files" and as pkcs11-ha/config.schema.json', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.files).toContain('schema');
    expect(pkg.exports['./config.schema.json']).toBe('./schema/pkcs11-ha.config.schema.json');
  });

  it('describes what a file holds, and no code-only option', () => {
    const schema = JSON.parse(configJsonSchemaText());
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(['members']);
    for (const key of ['$schema', 'members', 'memberOrder', 'scheduler', 'recovery', 'admin']) expect(schema.properties).toHaveProperty([key]);
    for (const key of ['clock', 'transportFactory']) expect(schema.properties).not.toHaveProperty([key]);
  });

  it('accepts a $schema key', () => {
    const config: GroupFileConfig = { $schema: './node_modules/pkcs11-ha/schema/pkcs11-ha.config.schema.json', members: [member('a')] };
    expect(resolveGroupConfig(config).members[0]!.name).toBe('a');
  });

  it('a config file with $schema and a PIN from a file loads through the CLI', () => {
    const pinFile = join(dir, 'user.pin');
    writeFileSync(pinFile, `${PIN}\n`);
    const path = join(dir, 'group.json');
    writeFileSync(path, JSON.stringify({ $schema: 'pkcs11-ha/config.schema.json', members: [member('a', { userPin: { file: pinFile } })], memberOrder: { clientId: 'web-01' } }));
    expect(loadConfigFile(path).members).toHaveLength(1);
    rmSync(pinFile);
    expect(() => loadConfigFile(path)).toThrow(/group\.json: members\[0\]\.userPin\.file: cannot read .*ENOENT/);
  });

  it('still refuses an unknown option, naming the code-only ones among the known', () => {
    const error = refusal({ members: [member('a')], shedule: 'x' });
    expect(error.path).toBe('shedule');
    expect(error.message).toContain('clock, transportFactory');
  });
});

describe('PIN sources', () => {
  it('reads a PIN inline, from an environment variable, or from the first line of a file', () => {
    const file = join(dir, 'so.pin');
    writeFileSync(file, `${PIN}1\n`);
    process.env.PKCS11_HA_TEST_PIN = PIN;
    const r = resolveGroupConfig({
      members: [member('a', { userPin: PIN }), member('b', { userPin: { env: 'PKCS11_HA_TEST_PIN' }, soPin: { file } })],
    });
    expect(r.members.map((m) => m.userPin?.reveal())).toEqual([PIN, PIN]);
    expect(r.members[1]!.soPin!.reveal()).toBe(`${PIN}1`);
    expect(inspect(r, { depth: 10 }) + JSON.stringify(r)).not.toContain(PIN);
  });

  type Row = { what: string; pin: unknown; path: string; says: string };
  it.each<Row>([
    { what: 'a variable not set', pin: { env: 'PKCS11_HA_TEST_UNSET' }, path: 'members[0].userPin.env', says: 'PKCS11_HA_TEST_UNSET is not set' },
    { what: 'a file that is not there', pin: { file: '/nonexistent/pkcs11-ha.pin' }, path: 'members[0].userPin.file', says: 'ENOENT' },
    { what: 'an empty variable name', pin: { env: '' }, path: 'members[0].userPin.env', says: 'must be a variable name' },
    { what: 'both env and file', pin: { env: 'A', file: '/p' }, path: 'members[0].userPin', says: '{ env: NAME } or { file: path }' },
    { what: 'a number', pin: Number(PIN), path: 'members[0].userPin', says: 'got <redacted number>' },
    { what: 'an empty string', pin: '', path: 'members[0].userPin', says: 'got <redacted string>' },
  ])('refuses $what at $path, never echoing a PIN', ({ pin, path, says }) => {
    delete process.env.PKCS11_HA_TEST_UNSET;
    const error = refusal({ members: [member('a', { userPin: pin, soPin: PIN })] });
    expect(error.path).toBe(path);
    expect(error.message).toContain(says);
    expect(error.message + inspect(error)).not.toContain(PIN);
  });

  it('does not echo the content of a PIN file that has no PIN on its first line', () => {
    const file = join(dir, 'blank.pin');
    writeFileSync(file, `\n${PIN}\n`);
    const error = refusal({ members: [member('a', { soPin: { file } })] });
    expect(error.path).toBe('members[0].soPin.file');
    expect(error.message).not.toContain(PIN);
  });
});

describe('memberOrder', () => {
  const three = [member('a'), member('b'), member('c')];
  const order = (config: GroupConfig) => resolveGroupConfig(config).members.map((m) => m.name);

  it("keeps the written order by default and with 'config'", () => {
    expect(order({ members: three })).toEqual(['a', 'b', 'c']);
    expect(order({ members: three, memberOrder: 'config' })).toEqual(['a', 'b', 'c']);
  });

  it.each(['app-1', 'app-2', 'app-3', 'app-4', 'app-5', 'app-6', 'web-01', 'web-02', 'batch'])('client %s: a rotation of the members, the same on every resolve', (clientId) => {
    const first = order({ members: three, memberOrder: { clientId } });
    expect(order({ members: three, memberOrder: { clientId } })).toEqual(first);
    const start = ['a', 'b', 'c'].indexOf(first[0]!);
    expect(first).toEqual([0, 1, 2].map((i) => ['a', 'b', 'c'][(start + i) % 3]));
  });

  it('spreads the primaries: every member is first for some client', () => {
    const firsts = new Set(['app-1', 'app-2', 'app-3', 'app-4', 'app-5', 'app-6', 'web-01', 'web-02', 'batch'].map((clientId) => order({ members: three, memberOrder: { clientId } })[0]));
    expect([...firsts].sort()).toEqual(['a', 'b', 'c']);
    // Over many clients, each of the 3 members is first for about a third of them.
    const counts = [0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[memberOrderShift(`client-${i}`, 3)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(850);
  });

  it('rotates the active members only: standbys keep their places; indexes follow the order, paths the file', () => {
    const r = resolveGroupConfig({ members: [member('a'), member('s', { role: 'standby' }), member('b'), member('c')], memberOrder: { clientId: 'app-2' } });
    expect(r.members[1]).toMatchObject({ name: 's', index: 1, path: 'members[1]' });
    expect(r.members.map((m) => m.index)).toEqual([0, 1, 2, 3]);
    for (const m of r.members) expect(m.path).toBe(`members[${['a', 's', 'b', 'c'].indexOf(m.name)}]`);
  });

  it.each([
    [{ clientId: '' }, 'memberOrder.clientId', '""'],
    ['hash', 'memberOrder', '"hash"'],
    [{ client: 'x' }, 'memberOrder.client', 'unknown option'],
  ])('refuses %j at %s', (memberOrder, path, echo) => {
    const error = refusal({ members: three, memberOrder });
    expect(error.path).toBe(path);
    expect(error.message).toContain(echo);
  });
});
