/**
 * Security checks on a group of three real member hosts, with a journal file, an admin
 * endpoint and a logger:
 * - PINs and key bytes appear in no log line, error, event, status, admin answer or journal
 *   file (known values scanned for as text, hex, base64 and raw bytes);
 * - the member host sockets, the admin socket and the journal are the owner's only
 *   (sockets and files 0600, directories the group makes 0700);
 * - a wrong PIN is tried on one member only, and never again by the group on its own;
 * - a key created non-extractable never leaves a member in plaintext, by any API path.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient } from '../../src/admin/admin-client.js';
import { HostTransport } from '../../src/host/host-transport.js';
import { HaGroup, type GroupConfig, type HaGroupEvents, type ObjectHandle, type VirtualSession } from '../../src/index.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { provisionKeys, standardKeys } from '../../src/testbed/provision.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';
import { containsBytes, RecordingTransport, type Exchange } from '../helpers/recording-transport.js';
import { until } from '../helpers/until.js';

/** PINs no other text could contain by chance. */
const USER_PIN = 'Upin-4f9c1e77';
const SO_PIN = 'Sopin-8b2d60aa';
const WRONG_PIN = 'Wrong-pin-31d5';
const KEYS = standardKeys('sec');
const AES_VALUE = (KEYS.find((k) => k.kind === 'aes') as { value: Buffer }).value;
const EVENT_NAMES: readonly (keyof HaGroupEvents)[] = [
  'replicationOwed', 'replicaMissed', 'memberFailed', 'memberConnectFailed', 'memberRecovered', 'recoveryFailed',
  'standbyPromoted', 'standbyDemoted', 'resyncProgress', 'memberStateChanged', 'primaryChanged', 'identityConflict',
];

/** The member host under member `index`'s recording transport. */
const hostOf = (group: HaGroup, index: number): HostTransport => (internalsOf(group).members[index]!.transport as RecordingTransport).inner as HostTransport;
const hostPid = (group: HaGroup, index: number): number => hostOf(group, index).pid!;

const mode = async (path: string): Promise<string> => ((await stat(path)).mode & 0o777).toString(8);

describe('secrets and permissions (3 member hosts, journal file, admin endpoint, logger)', () => {
  let bed: Testbed;
  let dir: string;
  let group: HaGroup;
  let session: VirtualSession;
  const log: Exchange[] = [];
  /** Everything the application can observe, to be scanned at the end. */
  const seen: unknown[] = [];
  const lines: unknown[] = [];
  let imported: Buffer;

  const line =
    (level: string) =>
    (fields: unknown, message: string): void => {
      lines.push({ level, fields, message });
    };
  const config = (): GroupConfig => ({
    members: bed.memberConfigs(),
    journalPath: join(dir, 'state', 'journal.json'),
    admin: { socket: join(dir, 'admin.sock') },
    recovery: { maxAttempts: 0 },
    deadlineMs: 5_000,
    transportFactory: (m, makeDefault) => new RecordingTransport(m.name, makeDefault(), log),
    // A pino-like logger that keeps every line (the option of src/observability/logger.ts).
    logger: { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') },
  });

  beforeAll(async () => {
    bed = await createTestbed({ count: 3, userPin: USER_PIN, soPin: SO_PIN });
    provisionKeys(bed.tokens, KEYS);
    dir = await mkdtemp(join(tmpdir(), 'pkcs11-ha-secrets-'));
    await HaGroup.initDomain({ members: bed.memberConfigs() });
    group = await HaGroup.open(config());
    for (const name of EVENT_NAMES) group.on(name, (event: unknown) => seen.push({ name, event }));
    session = group.slot.openSession();
  }, 60_000);
  afterAll(async () => {
    await group?.close();
    await bed?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a wrong PIN is tried on one member only, and the group never tries it again on its own', async () => {
    const error = await session.login(WRONG_PIN).catch((e: unknown) => e);
    seen.push(error);
    expect(error).toMatchObject({ code: 'ERR_PKCS11', ckr: 'CKR_PIN_INCORRECT', fn: 'C_Login', fault: 'caller' });
    const tried = () => log.filter((e) => e.command.op === 'login' && containsBytes(e.command, Buffer.from(WRONG_PIN)));
    expect(tried().map((e) => e.member)).toEqual(['member-1']);
    expect(group.status().members.map((m) => m.state.kind)).toEqual(['active', 'active', 'active']);
    // A member fails and is recovered: the group logs it in with nothing it was not given.
    process.kill(hostPid(group, 1), 'SIGKILL');
    await until(() => group.status().members[1]!.state.kind === 'failed', 'member-2 failed');
    expect(await group.recover('member-2')).toBe(true);
    await session.login(USER_PIN);
    expect(tried()).toHaveLength(1);
    // The right PIN went to every member once the first accepted it.
    expect(log.filter((e) => e.command.op === 'login' && containsBytes(e.command, Buffer.from(USER_PIN))).length).toBeGreaterThanOrEqual(3);
  });

  it('a key created non-extractable never leaves a member in plaintext, by any API path', async () => {
    const [provisioned] = await session.findObjects({ label: 'sec-aes', class: 'secretKey' });
    const generated = await session.generateKey('AES_KEY_GEN', { label: 'sec-unx', valueLen: 32, token: true, encrypt: true, decrypt: true, extractable: false });
    const wrapper = await session.generateKey('AES_KEY_GEN', { label: 'sec-wrapper', valueLen: 32, token: false, wrap: true, unwrap: true, encrypt: true });
    const rsaPair = await session.generateKeyPair('RSA_PKCS_KEY_PAIR_GEN', { token: false, modulusBits: 2048, publicExponent: 65537, wrap: true, encrypt: true }, { token: false, unwrap: true, decrypt: true });
    for (const key of [provisioned!, generated]) {
      expect(await session.getAttributes(key, ['value', 'sensitive'])).toEqual({ sensitive: true });
      expect(await session.getAttributeValues(key, [pkcs11js.CKA_VALUE])).toEqual([{ type: pkcs11js.CKA_VALUE, value: undefined }]);
      // Under every handle the application has, with every wrapping mechanism: refused.
      const handles: ObjectHandle[] = [...new Set([...(await session.findObjects({})), wrapper, rsaPair.publicKey, rsaPair.privateKey])];
      for (const h of handles) {
        for (const mechanism of ['AES_KEY_WRAP_PAD', 'AES_KEY_WRAP', { name: 'RSA_PKCS_OAEP' as const }, 'RSA_PKCS', 'AES_ECB'] as const) {
          const wrapped = await session.wrapKey(mechanism, h, key).catch((e: unknown) => e);
          expect(wrapped, `wrapKey(${JSON.stringify(mechanism)}, ${h}, ${key})`).toMatchObject({ code: expect.stringMatching(/^ERR_(PKCS11|INVALID_HANDLE|INVALID_ARGUMENT)$/) });
          seen.push(wrapped);
        }
      }
      // A copy cannot be made readable, nor the key itself.
      const copy = await session.copyObject(key, { token: false, sensitive: false, extractable: true }).catch((e: unknown) => e);
      seen.push(copy);
      if (typeof copy === 'number') expect((await session.getAttributes(copy, ['value'])).value).toBeUndefined();
      else expect(copy).toMatchObject({ code: expect.stringMatching(/^ERR_(PKCS11|INVALID_ARGUMENT)$/) });
      for (const change of [{ sensitive: false }, { wrapWithTrusted: false }, { extractable: true }] as const) {
        seen.push(await session.setAttributes(key, change).catch((e: unknown) => e));
      }
      expect(await session.getAttributes(key, ['value', 'sensitive', 'wrapWithTrusted'])).toEqual({ sensitive: true, wrapWithTrusted: key === generated ? true : false });
      expect((await session.getAttributes(key, ['value'])).value).toBeUndefined();
    }
    // No command answer of any member carried the provisioned key's value.
    for (const e of log) expect(containsBytes([e.result, e.error], AES_VALUE), `${e.member} ${e.command.op}`).toBe(false);
    expect(group.status().members.map((m) => m.state.kind)).toEqual(['active', 'active', 'active']);
  });

  it('PINs and key bytes appear in no log line, error, event, status, admin answer or journal file', async () => {
    // An imported key, made while member-3 is down: the journal keeps what member-3 owes (wrapped).
    imported = randomBytes(32);
    process.kill(hostPid(group, 2), 'SIGKILL');
    await until(() => group.status().members[2]!.state.kind === 'failed', 'member-3 failed');
    const key = await session.createObject({ class: 'secretKey', keyType: 'aes', value: imported, label: 'sec-imported', token: true, encrypt: true, decrypt: true });
    seen.push(await session.createObject({ class: 'secretKey', keyType: 'aes', value: imported, token: false, trusted: true }).catch((e: unknown) => e));
    seen.push(await session.encrypt('AES_GCM' as never, key, Buffer.alloc(4)).catch((e: unknown) => e));
    expect(group.status().owed).toEqual({ 'member-3': 1 });
    await internalsOf(group).journal.flush();
    const journal = await readFile(join(dir, 'state', 'journal.json'));
    // The admin endpoint: status and a recovery, as the CLI asks for them.
    const admin = await AdminClient.connect(join(dir, 'admin.sock'));
    try {
      seen.push(await admin.request('status', {}));
      seen.push(await admin.request('recover', { member: 'member-3' }));
      seen.push(await admin.request('recover', { member: 'nobody' }).catch((e: unknown) => e));
      seen.push(await admin.request('status', {}));
    } finally {
      admin.close();
    }
    expect(group.status().owed).toEqual({});
    seen.push(group.status(), inspect(group, { depth: 6, showHidden: true }), inspect(session, { depth: 6 }));

    const secrets = { USER_PIN: Buffer.from(USER_PIN), SO_PIN: Buffer.from(SO_PIN), WRONG_PIN: Buffer.from(WRONG_PIN), 'provisioned AES value': AES_VALUE, 'imported AES value': imported };
    const places = { 'errors, events, status and admin answers': seen, 'log lines': lines, journal, 'journal as text': journal.toString('utf8') };
    expect(lines.length, 'the logger was used').toBeGreaterThan(0);
    expect(seen.length).toBeGreaterThan(20);
    const leaks = (value: unknown, bytes: Buffer): boolean => {
      const text = inspect(value, { depth: 12, maxArrayLength: null, maxStringLength: null, breakLength: Infinity }).replace(/\s+/g, '');
      // As bytes, text, hex, base64 (containsBytes), and as a JSON or inspected array of numbers.
      const forms = [bytes.toString('hex'), bytes.toString('base64'), [...bytes].join(','), bytes.toString('latin1')];
      return containsBytes(value, bytes) || forms.some((f) => text.includes(f));
    };
    // Control: the scan finds them where they are (the commands sent to the members).
    expect(leaks(log.map((e) => e.command), secrets.USER_PIN)).toBe(true);
    expect(leaks(log.map((e) => e.command), imported)).toBe(true);
    expect(leaks(JSON.parse(JSON.stringify(log.map((e) => e.command))), imported)).toBe(true);
    const found: string[] = [];
    for (const [where, value] of Object.entries(places)) {
      for (const [what, bytes] of Object.entries(secrets)) if (leaks(value, bytes)) found.push(`${what} in ${where}`);
    }
    expect(found).toEqual([]);
  });

  it('member host sockets, the admin socket and the journal are the owner\'s only', async () => {
    for (const i of [0, 1, 2]) {
      const t = hostOf(group, i);
      expect(t).toBeInstanceOf(HostTransport);
      const socket = t.socketPath!;
      expect({ socket: await mode(socket), dir: await mode(join(socket, '..')) }).toEqual({ socket: '600', dir: '700' });
    }
    expect(await mode(join(dir, 'admin.sock'))).toBe('600');
    expect({ journal: await mode(join(dir, 'state', 'journal.json')), dir: await mode(join(dir, 'state')) }).toEqual({ journal: '600', dir: '700' });
  });
});
