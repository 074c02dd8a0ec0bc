/**
 * Two application processes sharing one PostgreSQL journal: server A (this process) and
 * server B (a child process, test/helpers/app-server.ts), each with its own group and its
 * own member host processes over the same three SoftHSM2 token directories. A's host of
 * member-3 is killed while A creates, destroys and renames keys; B, whose host of member-3
 * serves, repairs it from PostgreSQL, once; the keys work through both processes; A's own
 * recovery then finds nothing left to do. And PostgreSQL stopped before a key creation,
 * and during one (after the key is made, before its debt is durable), and under a deletion
 * and a rename: a typed error, and nothing left that is owed but not recorded.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GroupConfig } from '../../src/group/group-config.js';
import { HaGroup } from '../../src/group/ha-group.js';
import { pkcs11js as P } from '../../src/native/pkcs11js.js';
import { findOn } from '../../src/replication/member-objects.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';
import { startAppProcess, type AppProcess } from '../helpers/app-process.js';
import { hostPid } from '../helpers/host-pid.js';
import { POSTGRES_MISSING, postgresBinaries, startPostgres, type PostgresServer } from '../helpers/postgres.js';
import { until } from '../helpers/until.js';

// In CI the server is installed (.ci/run): there a missing server fails the tests instead.
const absent = postgresBinaries === undefined && process.env.CI !== 'true';
if (absent) console.warn(`shared journal tests skipped: ${POSTGRES_MISSING}`);

const SCHEMA = 'fleet';
const aes = (label: string) => ({ label, token: true, valueLen: 32, encrypt: true, decrypt: true });

describe.skipIf(absent)('a PostgreSQL journal shared by two application processes', () => {
  let bed: Testbed;
  let server: PostgresServer;
  let db: pg.Client;
  let a: HaGroup | undefined;
  let session: VirtualSession;
  let b: AppProcess | undefined;

  const config = (recovery: GroupConfig['recovery']): GroupConfig => ({
    members: bed.memberConfigs(),
    transport: 'host',
    recovery,
    journal: { postgres: { connectionString: server.connectionString, schema: SCHEMA, refreshIntervalMs: 100 } },
  });

  /** How many objects labelled `label` the token of member `index` holds, seen through A's host of it. */
  const onTokenAtA = async (index: number, label: string): Promise<number> =>
    (await findOn(internalsOf(a!).members[index]!, [{ type: P.CKA_LABEL, value: Buffer.from(label) }, { type: P.CKA_TOKEN, value: true }], undefined)).length;

  const rows = async (sql: string): Promise<Record<string, unknown>[]> => (await db.query(sql)).rows;

  const connect = async (): Promise<void> => {
    db = new pg.Client({ connectionString: server.connectionString });
    db.on('error', () => undefined); // the server is stopped on purpose below
    await db.connect();
  };

  beforeAll(async () => {
    server = await startPostgres();
    await connect();
    bed = await createTestbed({ count: 3 });
    await HaGroup.initDomain({ members: bed.memberConfigs() });
    // A repairs nothing on its own until asked (its loop is off): B must reach the member first.
    [a, b] = await Promise.all([HaGroup.open(config({ maxAttempts: 0 })), startAppProcess(config({ intervalMs: 60_000 }), bed.tokens[0]!.userPin)]);
    session = a.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
  }, 180_000);
  afterAll(async () => {
    await Promise.allSettled([a?.close(), b?.close()]);
    await db?.end().catch(() => undefined);
    await server?.dispose();
    await bed?.dispose();
  });

  it('repairs a member that missed keys, a deletion and a rename at server A from server B, once; keys work through both', async () => {
    const old = await session.generateKey('AES_KEY_GEN', aes('old'));
    const renamed = await session.generateKey('AES_KEY_GEN', aes('before-rename'));
    expect(await b!.onToken(2, 'old')).toBe(1);

    process.kill(hostPid(a!, 2), 'SIGKILL');
    await until(() => a!.status().members[2]!.state.kind === 'failed', "A's member-3 to fail");

    const fresh = await session.generateKey('AES_KEY_GEN', aes('fresh'));
    await session.destroyObject(old);
    await session.setAttributes(renamed, { label: 'after-rename' });
    // Recorded in PostgreSQL before each call returned (B may be repairing already: debts or settlements).
    const recorded = await rows(`SELECT member, kind FROM ${SCHEMA}.debts UNION ALL SELECT member, kind FROM ${SCHEMA}.settlements`);
    expect(recorded.map((r) => `${r.member as string}:${r.kind as string}`).sort()).toEqual(['member-3:destroy', 'member-3:replica', 'member-3:setAttributes']);

    // B learns of the debts from PostgreSQL and repairs member-3 through its own host of it.
    await until(async () => (await rows(`SELECT 1 FROM ${SCHEMA}.debts`)).length === 0, 'B to repair member-3', 30_000, 50);
    const settled = await rows(`SELECT kind, count(*)::int AS n FROM ${SCHEMA}.settlements GROUP BY kind ORDER BY kind`);
    expect(settled).toEqual([
      { kind: 'destroy', n: 1 },
      { kind: 'replica', n: 1 },
      { kind: 'setAttributes', n: 1 },
    ]);
    expect(b!.events.filter((e) => e.event === 'resyncProgress' && e.member === 'member-3').length).toBeGreaterThan(0);
    expect(await b!.onToken(2, 'fresh')).toBe(1);
    expect(await b!.onToken(2, 'old')).toBe(0);
    expect(await b!.onToken(2, 'after-rename')).toBe(1);
    expect(await b!.onToken(2, 'before-rename')).toBe(0);
    await until(() => a!.status().owed['member-3'] === undefined, "A to see member-3's debts settled", 10_000, 20);

    // The key made through A works through B, without a restart, and on every member there.
    expect(await b!.find('fresh')).toEqual({ count: 1, holders: [['member-1', 'member-2', 'member-3']] });
    const iv = Buffer.alloc(12, 7);
    const data = Buffer.from('made at A, used at B');
    const sealed = await b!.encrypt('fresh', iv, data);
    expect((await session.decrypt({ name: 'AES_GCM', iv }, fresh, sealed)).equals(data)).toBe(true);
    expect(await b!.find('old')).toEqual({ count: 0, holders: [] });

    // A recovers its host of member-3: nothing is left to repair, and nothing is applied twice.
    const repairedAtA: unknown[] = [];
    a!.on('resyncProgress', (e) => repairedAtA.push(e));
    expect(await a!.recover('member-3')).toBe(true);
    expect(repairedAtA).toEqual([]);
    expect((await rows(`SELECT count(*)::int AS n FROM ${SCHEMA}.settlements`))[0]).toEqual({ n: 3 });
    expect(await onTokenAtA(2, 'fresh')).toBe(1);
    expect(await onTokenAtA(2, 'after-rename')).toBe(1);
    const sealedAtA = await session.encrypt({ name: 'AES_GCM', iv }, fresh, data);
    expect((await b!.decrypt('fresh', iv, sealedAtA)).equals(data)).toBe(true);
  }, 120_000);

  it('fails a key creation with ERR_JOURNAL when PostgreSQL stops, and leaves no copy and no unrecorded debt', async () => {
    process.kill(hostPid(a!, 2), 'SIGKILL');
    await until(() => a!.status().members[2]!.state.kind === 'failed', "A's member-3 to fail");
    const debtsBefore = await rows(`SELECT id FROM ${SCHEMA}.debts`);

    await server.stop({ immediate: true });
    try {
      await expect(session.generateKey('AES_KEY_GEN', aes('while-db-down'))).rejects.toMatchObject({ code: 'ERR_JOURNAL' });
      // Rolled back on the members that made their copy; member-3 owes nothing for it.
      expect(await onTokenAtA(0, 'while-db-down')).toBe(0);
      expect(await onTokenAtA(1, 'while-db-down')).toBe(0);
      expect(a!.status().owed['member-3'] ?? 0).toBe(0);
      expect(await session.findObjects({ label: 'while-db-down' })).toEqual([]);
    } finally {
      await server.start();
    }
    await db.end().catch(() => undefined);
    await connect();
    expect(await rows(`SELECT id FROM ${SCHEMA}.debts`)).toEqual(debtsBefore);
    expect(await b!.onToken(2, 'while-db-down')).toBe(0);
    // With the server back, a creation succeeds and member-3's debt is recorded (B then repairs it).
    await session.generateKey('AES_KEY_GEN', aes('after-db-back'));
    await until(async () => (await b!.onToken(2, 'after-db-back')) === 1, 'B to repair member-3 again', 30_000, 50);
    expect(await rows(`SELECT member, kind FROM ${SCHEMA}.settlements WHERE kind = 'replica' ORDER BY debt_id DESC LIMIT 1`)).toEqual([{ member: 'member-3', kind: 'replica' }]);
  }, 120_000);

  it('fails a key creation with ERR_JOURNAL when PostgreSQL stops during it (the key made, its debt not yet durable), and leaves no copy and no unrecorded debt', async () => {
    if (a!.status().members[2]!.state.kind !== 'failed') {
      process.kill(hostPid(a!, 2), 'SIGKILL');
      await until(() => a!.status().members[2]!.state.kind === 'failed', "A's member-3 to fail");
    }
    // A sees what B settled before (its view of the store catches up on its refresh).
    await until(() => a!.status().owed['member-3'] === undefined, "A to see member-3's debts settled", 10_000, 20);
    const debtsBefore = await rows(`SELECT id FROM ${SCHEMA}.debts`);
    const journal = internalsOf(a!).journal;
    const owe = journal.owe.bind(journal);
    let stoppedAt: { member: string; kind: string; keyRead: boolean } | undefined;
    // The creator has made the key and read it for its replicas; member-3's debt is about to
    // be written. Once member-1 and member-2 hold their copies, the server stops.
    journal.owe = async (member, debt) => {
      if (stoppedAt === undefined && member === 'member-3' && debt.kind === 'replica') {
        stoppedAt = { member, kind: debt.kind, keyRead: debt.wrapped !== undefined };
        await until(async () => (await onTokenAtA(0, 'db-stopped-during')) > 0 && (await onTokenAtA(1, 'db-stopped-during')) > 0, 'the copies on member-1 and member-2', 10_000, 10);
        await server.stop({ immediate: true });
      }
      return owe(member, debt);
    };
    try {
      await expect(session.generateKey('AES_KEY_GEN', aes('db-stopped-during'))).rejects.toMatchObject({ code: 'ERR_JOURNAL' });
      expect(stoppedAt).toEqual({ member: 'member-3', kind: 'replica', keyRead: true });
      // Rolled back on the members that made their copy; member-3 owes nothing for it.
      expect(await onTokenAtA(0, 'db-stopped-during')).toBe(0);
      expect(await onTokenAtA(1, 'db-stopped-during')).toBe(0);
      expect(a!.status().owed['member-3'] ?? 0).toBe(0);
      expect(await session.findObjects({ label: 'db-stopped-during' })).toEqual([]);
    } finally {
      Reflect.deleteProperty(journal, 'owe');
      if (server.pid === undefined) await server.start();
    }
    await db.end().catch(() => undefined);
    await connect();
    // Nothing kept in memory is written once the server is back: the debts are as they were.
    await journal.flush();
    expect(await rows(`SELECT id FROM ${SCHEMA}.debts`)).toEqual(debtsBefore);
    expect(await b!.onToken(2, 'db-stopped-during')).toBe(0);
    expect(await b!.find('db-stopped-during')).toEqual({ count: 0, holders: [] });
  }, 120_000);
  it('fails a deletion and a rename that member-3 would owe with ERR_JOURNAL while PostgreSQL is down, and changes nothing', async () => {
    if (a!.status().members[2]!.state.kind !== 'failed') {
      process.kill(hostPid(a!, 2), 'SIGKILL');
      await until(() => a!.status().members[2]!.state.kind === 'failed', "A's member-3 to fail");
    }
    const key = await session.generateKey('AES_KEY_GEN', aes('kept-while-db-down'));
    await server.stop({ immediate: true });
    try {
      await expect(session.destroyObject(key)).rejects.toMatchObject({ code: 'ERR_JOURNAL' });
      await expect(session.setAttributes(key, { label: 'renamed-while-db-down' })).rejects.toMatchObject({ code: 'ERR_JOURNAL' });
      // Applied nowhere: the key is on member-1 and member-2 under its name, and works.
      expect(await onTokenAtA(0, 'kept-while-db-down')).toBe(1);
      expect(await onTokenAtA(1, 'kept-while-db-down')).toBe(1);
      expect(await session.findObjects({ label: 'kept-while-db-down' })).toEqual([key]);
      const iv = Buffer.alloc(12, 3);
      const sealed = await session.encrypt({ name: 'AES_GCM', iv }, key, Buffer.from('kept'));
      expect((await session.decrypt({ name: 'AES_GCM', iv }, key, sealed)).toString()).toBe('kept');
    } finally {
      if (server.pid === undefined) await server.start();
    }
    await db.end().catch(() => undefined);
    await connect();
    // Nothing withdrawn reaches the store once it is back; B repairs member-3 with the key, under its name.
    await internalsOf(a!).journal.flush();
    expect(await rows(`SELECT kind FROM ${SCHEMA}.debts WHERE kind <> 'replica'`)).toEqual([]);
    await until(async () => (await b!.onToken(2, 'kept-while-db-down')) === 1, 'B to repair member-3', 30_000, 50);
    expect(await b!.onToken(2, 'renamed-while-db-down')).toBe(0);
  }, 120_000);
});
