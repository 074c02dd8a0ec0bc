/**
 * `pkcs11-ha host`: its usage and configuration errors (one line, exit 2, no stack). A
 * running host is exercised in test/host/tls-member-host.test.ts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noStack, run } from './run-cli.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pkcs11-ha-host-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('pkcs11-ha host', () => {
  it('needs --listen and --config', async () => {
    const r = await run(['host', '--config', 'x.json']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/host needs --listen <address:port> and --config <host.json>/);
  });

  it('refuses a bad --listen, an unreadable file and a bad value, naming them', async () => {
    const file = join(dir, 'host.json');
    await writeFile(file, JSON.stringify({ module: '/x.so', token: { label: 'a' }, tls: { ca: 'ca.pem', cert: 'c.pem' } }));
    const listen = await run(['host', '--listen', 'nowhere', '--config', file]);
    expect([listen.code, listen.err]).toEqual([2, expect.stringMatching(/--listen: must be <address>:<port>, got "nowhere"/)]);
    const missing = await run(['host', '--listen', '127.0.0.1:0', '--config', join(dir, 'none.json')]);
    expect([missing.code, missing.err]).toEqual([2, expect.stringMatching(/cannot read .*none\.json as JSON \(ENOENT\)/)]);
    const bad = await run(['host', '--listen', '127.0.0.1:0', '--config', file]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/host\.json: tls\.key/);
    for (const r of [listen, missing, bad]) expect(noStack(r.err)).toBe(true);
  });

  it('is listed in the help', async () => {
    const r = await run(['--help']);
    expect(r.out).toMatch(/host\s+.*remote member host/);
  });
});
