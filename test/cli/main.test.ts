import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((out += String(chunk)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((err += String(chunk)), true));
  try {
    return { code: await main(args), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('pkcs11-ha CLI', () => {
  let bed: Testbed;
  let config: string;
  beforeAll(async () => {
    bed = await createTestbed({ count: 2 });
    config = join(bed.dir, 'group.json');
    writeFileSync(config, JSON.stringify({ members: bed.memberConfigs() }));
  });
  afterAll(async () => bed?.dispose());

  it('init gives both members one domain key; status shows it; no PIN is printed', async () => {
    const init = await run(['init', '--config', config]);
    expect(init.code).toBe(0);
    const result = JSON.parse(init.out) as { checkValue: string; created: boolean; joined: string[] };
    expect(result).toMatchObject({ created: true, joined: ['member-2'] });
    const status = await run(['status', '-c', config]);
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.out) as { domain: string; members: { state: { kind: string } }[] };
    expect(parsed.domain).toBe(result.checkValue);
    expect(parsed.members.map((m) => m.state.kind)).toEqual(['active', 'active']);
    for (const text of [init.out, init.err, status.out, status.err]) {
      expect(text).not.toContain(bed.tokens[0]!.userPin);
      expect(text).not.toContain(bed.tokens[0]!.soPin);
    }
  });

  it('sync logs in with the configured userPin, settles nothing when nothing is owed, and prints no PIN', async () => {
    const withPin = join(bed.dir, 'with-pin.json');
    writeFileSync(withPin, JSON.stringify({ members: bed.memberConfigs().map((m, i) => ({ ...m, userPin: bed.tokens[i]!.userPin })), journalPath: join(bed.dir, 'journal.json') }));
    const sync = await run(['sync', '-c', withPin]);
    expect(sync.err).toBe('');
    expect(sync.code).toBe(0);
    expect((JSON.parse(sync.out) as { loggedIn: boolean; owed: object }).owed).toEqual({});
    expect(sync.out).not.toContain(bed.tokens[0]!.userPin);
    const pinless = join(bed.dir, 'pinless.json');
    writeFileSync(pinless, JSON.stringify({ members: bed.memberConfigs().map(({ userPin: _omit, ...m }) => m) }));
    const noPin = await run(['sync', '-c', pinless]);
    expect(noPin).toMatchObject({ code: 1 });
    expect(noPin.err).toContain('userPin');
  });

  it('says what is wrong with a bad command line or config', async () => {
    expect((await run([])).code).toBe(2);
    expect((await run(['frobnicate', '-c', config])).err).toContain('unknown command');
    const missing = await run(['status']);
    expect(missing).toMatchObject({ code: 1 });
    expect(missing.err).toContain('--config');
    const leaky = join(bed.dir, 'leaky.json');
    writeFileSync(leaky, '{ "members": [{ "soPin": so-secret-4711 }] }');
    const j = await run(['status', '-c', leaky]);
    expect(j.err).toMatch(/leaky\.json is not valid JSON/);
    expect(j.err).not.toContain('4711');
    const bad = join(bed.dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ members: [{ module: '/nonexistent.so', token: { label: 'x' } }] }));
    const r = await run(['status', '-c', bad]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ERR_CONFIG: members\[0\]\.module: module file not found/);
  });
});
