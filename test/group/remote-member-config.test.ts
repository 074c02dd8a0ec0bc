/**
 * Remote members in a group configuration: `{ url: 'tls://host:port', tls: { ca, cert, key } }`
 * beside local `{ module, token }` members, validated by the same zod definition, with
 * errors that name the value's path and never echo a PIN; `countHostLoad` on by default.
 */
import { describe, expect, it } from 'vitest';
import { resolveGroupConfig, type GroupConfig } from '../../src/group/group-config.js';
import { parseTlsUrl } from '../../src/rpc/tls-stream.js';

const tls = { ca: 'ca.pem', cert: 'app.pem', key: 'app.key' };
const local = { module: '/usr/lib/softhsm/libsofthsm2.so', token: { label: 'a' } };
const resolve = (members: unknown[], extra: Record<string, unknown> = {}) => resolveGroupConfig({ members, ...extra } as unknown as GroupConfig);

describe('remote members', () => {
  it('resolve beside local ones, named by their URL unless named', () => {
    const config = resolve([local, { url: 'tls://10.0.0.7:7000', tls, userPin: '1234' }, { name: 'b', url: 'tls://hsm-b.internal:7000', tls: { ...tls, servername: 'hsm-b' }, role: 'standby' }]);
    expect(config.members.map((m) => [m.name, m.role, m.remote?.url])).toEqual([
      ['a', 'active', undefined],
      ['tls://10.0.0.7:7000', 'active', 'tls://10.0.0.7:7000'],
      ['b', 'standby', 'tls://hsm-b.internal:7000'],
    ]);
    expect(config.members[2]!.remote).toEqual({ url: 'tls://hsm-b.internal:7000', ...tls, servername: 'hsm-b' });
    expect(config.members[1]!.userPin).toBeDefined();
    expect(config.countHostLoad).toBe(true);
    expect(resolve([local], { countHostLoad: false }).countHostLoad).toBe(false);
  });

  it.each([
    [{ url: 'http://h:1', tls }, 'members[0].url: must be tls://host:port, got "http://h:1"'],
    [{ url: 'tls://h:1', tls: { ca: 'ca.pem', cert: 'c.pem' } }, 'members[0].tls.key: must be a path, got undefined'],
    [{ url: 'tls://h:1', tls: { ...tls, pin: 'x' } }, 'members[0].tls.pin: unknown option'],
    [{ url: 'tls://h:1', tls, userPin: 12 }, 'members[0].userPin'],
    // A local member with a typo is told about the typo, not that it lacks a url.
    [{ ...local, rol: 'standby' }, 'members[0].rol: unknown option'],
    [{ module: '/x.so' }, 'members[0].token'],
  ])('%j is refused: %s', (member, message) => {
    let error: unknown;
    try {
      resolve([member]);
    } catch (e) {
      error = e;
    }
    expect((error as Error).message).toContain(message);
    expect((error as Error).message).not.toContain('"x"');
  });

  it('parses tls:// URLs, IPv6 in brackets', () => {
    expect(parseTlsUrl('tls://127.0.0.1:7000')).toEqual({ host: '127.0.0.1', port: 7000 });
    expect(parseTlsUrl('tls://[::1]:7000')).toEqual({ host: '::1', port: 7000 });
    expect(() => parseTlsUrl('tls://h:70000')).toThrow(/must be tls:\/\/host:port/);
    expect(() => parseTlsUrl('tcp://h:7')).toThrow(/must be tls:\/\/host:port/);
  });
});
