/**
 * The PostgreSQL journal against a real server (a throwaway cluster on a Unix socket):
 * schema creation and migration, rows that round-trip, a member claimed by exactly one
 * claimant under concurrent claimers, a claim lost with its connection or with a holder
 * that freezes, one error listener
 * per connection however many claims, messages free of the connection string, and {@link SharedJournal} over two processes' worth of stores.
 */
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresDebtStore, POSTGRES_JOURNAL_VERSION } from '../../src/replication/journal-postgres.js';
import { SharedJournal } from '../../src/replication/journal-shared.js';
import { JournalError, type Debt } from '../../src/replication/journal-store.js';
import { POSTGRES_MISSING, postgresBinaries, startPostgres, type PostgresServer } from '../helpers/postgres.js';
import { until } from '../helpers/until.js';
import { ref, replica } from './journal-fixtures.js';

// In CI the server is installed (.ci/run): there a missing server fails the tests instead.
const absent = postgresBinaries === undefined && process.env.CI !== 'true';
if (absent) console.warn(`journal-postgres tests skipped: ${POSTGRES_MISSING}`);

let schemaCount = 0;
/** A fresh schema per test: tests never see each other's rows. */
const freshSchema = () => `jt_${process.pid}_${++schemaCount}`;

describe.skipIf(absent)('PostgresDebtStore', () => {
  let server: PostgresServer;
  let admin: pg.Client;
  const stores: PostgresDebtStore[] = [];
  const store = (schema: string, clientId?: string) => {
    const s = new PostgresDebtStore({ connectionString: server.connectionString, schema, ...(clientId ? { clientId } : {}) });
    stores.push(s);
    return s;
  };

  beforeAll(async () => {
    server = await startPostgres();
    admin = new pg.Client({ connectionString: server.connectionString });
    await admin.connect();
  }, 60_000);
  afterAll(async () => {
    await Promise.allSettled(stores.map((s) => s.close()));
    await admin?.end();
    await server?.dispose();
  });

  it('creates its schema with a version table, once, and refuses a newer version', async () => {
    const schema = freshSchema();
    const [a, b] = [store(schema), store(schema)];
    // Two servers starting together: the migration runs once (the second waits for the first).
    await Promise.all([a.load(), b.load()]);
    const versions = await admin.query(`SELECT version FROM ${schema}.schema_version ORDER BY version`);
    expect(versions.rows.map((r) => r.version)).toEqual([POSTGRES_JOURNAL_VERSION]);
    const tables = await admin.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`, [schema]);
    expect(tables.rows.map((r) => r.table_name)).toEqual(['debts', 'schema_version', 'settlements', 'tentatives']);

    await admin.query(`INSERT INTO ${schema}.schema_version (version) VALUES ($1)`, [POSTGRES_JOURNAL_VERSION + 1]);
    const later = store(schema);
    await expect(later.load()).rejects.toMatchObject({ code: 'ERR_JOURNAL', fault: 'version' });
  });

  it('records, reads back (buffers included), settles once with an audit line, and removes', async () => {
    const schema = freshSchema();
    const s = store(schema, 'server-a');
    await s.load();
    const debt = replica(7, 'k1');
    const id = await s.record('m3', debt);
    const entryId = await s.recordTentative('m3', { searches: [[{ type: 3, value: Buffer.from('k1') }]] });
    const rows = await s.read();
    expect(rows.debts).toHaveLength(1);
    const back = rows.debts[0]!;
    expect(back).toMatchObject({ id, member: 'm3', debt: { kind: 'replica', object: { name: debt.object.name } } });
    expect((back.debt as Extract<Debt, { kind: 'replica' }>).wrapped!.equals((debt as Extract<Debt, { kind: 'replica' }>).wrapped!)).toBe(true);
    expect(rows.tentatives).toMatchObject([{ id: entryId, member: 'm3', stale: false }]);
    expect(Buffer.isBuffer(rows.tentatives[0]!.entry.searches[0]![0]!.value)).toBe(true);

    expect(await s.settle(id)).toBe(true);
    expect(await s.settle(id)).toBe(false);
    const audit = await admin.query(`SELECT debt_id::text, member, kind, settled_by FROM ${schema}.settlements`);
    expect(audit.rows).toEqual([{ debt_id: id, member: 'm3', kind: 'replica', settled_by: 'server-a' }]);
    await s.remove({ tentatives: [entryId] });
    expect(await s.read()).toEqual({ debts: [], tentatives: [] });
  });

  it('grants a member to exactly one of many concurrent claimers, and again after release', async () => {
    const schema = freshSchema();
    const claimers = Array.from({ length: 6 }, (_, i) => store(schema, `server-${i}`));
    await Promise.all(claimers.map((c) => c.load()));
    await claimers[0]!.record('m3', replica(1, 'k1'));
    const claims = await Promise.all(claimers.map((c) => c.claim('m3')));
    const granted = claims.filter((c) => c !== undefined);
    expect(granted).toHaveLength(1);
    expect(granted[0]!.debts).toHaveLength(1);
    // Another member is claimed independently.
    const other = await claimers[1]!.claim('m2');
    expect(other).toBeDefined();
    await other!.release();
    await granted[0]!.release();
    const again = await claimers[2]!.claim('m3');
    expect(again).toBeDefined();
    await again!.release();
  });

  it('settles every debt exactly once when claimers race to repair the same member', async () => {
    const schema = freshSchema();
    const claimers = Array.from({ length: 5 }, (_, i) => store(schema, `server-${i}`));
    await Promise.all(claimers.map((c) => c.load()));
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) ids.add(await claimers[i % 5]!.record('m3', replica(i, `k${i}`)));
    /** What each claimer repaired: a repair is counted when the claimer settles a debt it read under its claim. */
    const repaired: string[][] = claimers.map(() => []);
    // Each claimer goes on until every debt is repaired (bounded): a claimer refused a claim
    // tries again, so how often each is refused under contention does not decide the count.
    const repairedCount = () => repaired.reduce((n, r) => n + r.length, 0);
    await Promise.all(
      claimers.map(async (c, i) => {
        for (let round = 0; round < 500 && repairedCount() < 20; round++) {
          const claim = await c.claim('m3');
          if (claim === undefined) continue;
          try {
            // Repair a few, then let go: the others take over the rest.
            for (const row of claim.debts.slice(0, 3)) if (await claim.settle(row.id)) repaired[i]!.push(row.id);
          } finally {
            await claim.release();
          }
        }
      }),
    );
    const all = repaired.flat();
    expect(all.length).toBe(20);
    expect(new Set(all)).toEqual(ids);
    // More than one claimer took part, and the audit has one line per debt.
    expect(repaired.filter((r) => r.length > 0).length).toBeGreaterThan(1);
    const audit = await admin.query(`SELECT count(*)::int AS n, count(DISTINCT debt_id)::int AS d FROM ${schema}.settlements`);
    expect(audit.rows[0]).toEqual({ n: 20, d: 20 });
    expect((await claimers[0]!.read()).debts).toEqual([]);
  });

  it('loses a claim with its connection: the next settlement fails, and another claimant takes the member', async () => {
    const schema = freshSchema();
    const [a, b] = [store(schema, 'a'), store(schema, 'b')];
    await Promise.all([a.load(), b.load()]);
    const id = await a.record('m3', replica(1, 'k1'));
    const claim = await a.claim('m3');
    expect(claim).toBeDefined();
    expect(await b.claim('m3')).toBeUndefined();
    // The claim's backend dies (a network cut, a server-side kill): its advisory lock goes with it.
    await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()`);
    await expect(claim!.settle(id)).rejects.toBeInstanceOf(JournalError);
    await claim!.release();
    const taken = await b.claim('m3');
    expect(taken?.debts.map((d) => d.id)).toEqual([id]);
    expect(await taken!.settle(id)).toBe(true);
    await taken!.release();
  });

  it("ends the claim of a holder that freezes (SIGSTOP) after claimTimeoutMs, so another server repairs the member; a live holder keeps it", async () => {
    const schema = freshSchema();
    const b = store(schema, 'b');
    await b.load();
    const timeoutMs = 300;
    for (const bad of [0, 50, 1.5, Number.NaN]) {
      expect(() => new PostgresDebtStore({ connectionString: server.connectionString, schema, claimTimeoutMs: bad })).toThrow(/claimTimeoutMs must be an integer of at least 100/);
    }
    // A live holder keeps its claim past the timeout: its connection is kept busy.
    const live = new PostgresDebtStore({ connectionString: server.connectionString, schema, clientId: 'live', claimTimeoutMs: timeoutMs });
    stores.push(live);
    const held = await live.claim('m1');
    expect(held).toBeDefined();
    const since = (await admin.query<{ t: Date }>('SELECT now() AS t')).rows[0]!.t;
    // The holder has kept its connection busy over three timeouts (the server's clock)...
    await until(
      async () => (await admin.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'pkcs11-ha' AND state = 'idle' AND query = 'SELECT 1' AND query_start > $1::timestamptz + interval '900 milliseconds'`, [since])).rows.length > 0,
      'the live holder to keep its claim over three timeouts',
      15_000,
      50,
    );
    // ...and still holds it.
    expect(await b.claim('m1')).toBeUndefined();
    await held!.release();

    const child = fork(fileURLToPath(new URL('../helpers/claim-holder.ts', import.meta.url)), [], {
      execArgv: ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href],
      env: { ...process.env, CLAIM_DB: server.connectionString, CLAIM_SCHEMA: schema, CLAIM_MEMBER: 'm2', CLAIM_TIMEOUT_MS: String(timeoutMs) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    try {
      const claimed = await new Promise<unknown>((resolve, reject) => {
        child.once('message', (m: { claimed: boolean }) => resolve(m.claimed));
        child.once('exit', () => reject(new Error('the claim holder exited')));
      });
      expect(claimed).toBe(true);
      expect(await b.claim('m2')).toBeUndefined();
      process.kill(child.pid!, 'SIGSTOP');
      let taken: Awaited<ReturnType<PostgresDebtStore['claim']>>;
      await until(async () => (taken = await b.claim('m2')) !== undefined, 'another server to take the frozen holder\'s member', 15_000, 50);
      await taken!.release();
    } finally {
      process.kill(child.pid!, 'SIGCONT');
      child.disconnect();
      await until(() => child.exitCode !== null || child.signalCode !== null, 'the claim holder to exit', 10_000, 20).catch(() => child.kill('SIGKILL'));
    }
  });

  it('adds one error listener per connection, not one per claim: no MaxListenersExceededWarning after many claims', async () => {
    const schema = freshSchema();
    // One connection: every claim checks out the same one.
    const s = new PostgresDebtStore({ connectionString: server.connectionString, schema, clientId: 'one-connection', maxConnections: 1 });
    stores.push(s);
    await s.load();
    const id = await s.record('m3', replica(1, 'k1'));
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    try {
      for (let i = 0; i < 25; i++) {
        const claim = await s.claim('m3');
        expect(claim?.debts.map((d) => d.id)).toEqual([id]);
        await claim!.release();
        await s.read();
      }
      // A warning is emitted on a later tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
    // The connection still settles under a claim.
    const claim = await s.claim('m3');
    expect(await claim!.settle(id)).toBe(true);
    await claim!.release();
  });

  it('never prints the connection string or its password', async () => {
    const secret = 'pw-Zq81-never-printed';
    const unreachable = `postgresql://postgres:${secret}@localhost/postgres?host=${encodeURIComponent(`${server.socketDir}-missing`)}`;
    const s = new PostgresDebtStore({ connectionString: unreachable, schema: freshSchema(), timeoutMs: 2000 });
    stores.push(s);
    const error = await s.load().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(JournalError);
    expect((error as JournalError).code).toBe('ERR_JOURNAL');
    const shown = `${String(error)} ${JSON.stringify(error)} ${(error as Error).stack ?? ''} ${s.location}`;
    expect(shown).not.toContain(secret);
    expect(shown).not.toContain(unreachable);
    expect(shown).toContain('postgresql:jt_');
  });
});

describe.skipIf(absent)('SharedJournal over PostgreSQL', () => {
  let server: PostgresServer;
  const journals: SharedJournal[] = [];
  const open = async (schema: string) => {
    const j = new SharedJournal(new PostgresDebtStore({ connectionString: server.connectionString, schema, timeoutMs: 2000 }), { refreshIntervalMs: 50 });
    journals.push(j);
    await j.load();
    return j;
  };

  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await Promise.allSettled(journals.map((j) => j.close()));
    await server?.dispose();
  });

  it("shows one server's debts to another, which repairs them under its claim; the first sees them settled", async () => {
    const schema = freshSchema();
    const [a, b] = [await open(schema), await open(schema)];
    const k1 = replica(11, 'k1');
    await a.owe('m3', k1);
    await a.owe('m3', { kind: 'destroy', object: ref(12, 'k0') });
    expect(b.debts('m3')).toEqual([]);
    expect(await b.refresh()).toEqual([]);
    // B sees them in A's order, matched by identity (A's handles mean nothing to B).
    expect(b.debts('m3').map((d) => d.kind)).toEqual(['replica', 'destroy']);
    expect(b.debts('m3')[0]!.object.handle).toBe(-1);
    expect(b.owes('m3', { handle: 99, identity: { name: k1.object.name, fingerprint: k1.object.fingerprint } })).toBe(true);

    const claim = await b.claim('m3');
    expect(claim).toBeDefined();
    expect(await a.claim('m3')).toBeUndefined();
    for (const d of [...b.debts('m3')]) expect(await b.settle('m3', d)).toBe(true);
    await claim!.release();
    expect(b.summary()).toEqual({});

    expect(await a.refresh()).toEqual(['m3']);
    expect(a.debts('m3')).toEqual([]);
  });

  it("hides another server's fresh tentative entries (its creation may be running) and shows its own", async () => {
    const schema = freshSchema();
    const [a, b] = [await open(schema), await open(schema)];
    const entry = await a.markTentative('m1', [[{ type: 3, value: Buffer.from('k') }]]);
    expect(a.tentatives('m1')).toEqual([entry]);
    await b.refresh();
    expect(b.tentatives('m1')).toEqual([]);
    expect(b.summary()).toEqual({});
    await a.clearTentative('m1', entry);
    await a.flush();
    await b.refresh();
    expect(b.tentatives('m1')).toEqual([]);
  });

  it('never brings back a debt it settled from a read that began before the settlement (found with two processes over TLS hosts)', async () => {
    const schema = freshSchema();
    const a = await open(schema);
    await a.owe('m3', replica(31, 'settled-during-read'));
    const store = new PostgresDebtStore({ connectionString: server.connectionString, schema, timeoutMs: 2000 });
    // The store's read returns its rows only when the test lets it: the settlement lands between.
    let fetched!: () => void;
    let letGo!: () => void;
    const rowsFetched = new Promise<void>((r) => (fetched = r));
    const held = new Promise<void>((r) => (letGo = r));
    let gated = false;
    const slow = new Proxy(store, {
      get(target, prop) {
        if (prop === 'read' && gated) {
          return async () => {
            const rows = await target.read();
            fetched();
            await held;
            return rows;
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const b = new SharedJournal(slow, { refreshIntervalMs: 50 });
    journals.push(b);
    await b.load();
    expect(b.debts('m3')).toHaveLength(1);
    const claim = await b.claim('m3');
    expect(claim).toBeDefined();
    gated = true;
    const reading = b.refresh();
    await rowsFetched;
    expect(await b.settle('m3', b.debts('m3')[0]!)).toBe(true);
    letGo();
    await reading;
    expect(b.debts('m3')).toEqual([]);
    gated = false;
    await b.refresh();
    expect(b.debts('m3')).toEqual([]);
    await claim!.release();
  });

  it('removes the row of a debt forgotten while its insert ran (a rolled-back creation): no other server can act on it', async () => {
    const schema = freshSchema();
    const [a, b] = [await open(schema), await open(schema)];
    const owed = a.owe('m3', replica(21, 'rolled-back'));
    await a.forgetObject(21);
    await owed;
    // The row went at once (not at A's next flush or refresh): a server that reads now sees nothing owed.
    await until(async () => (await b.refresh(), b.debts('m3').length === 0), 'the void row to go', 5000, 20);
    const c = await open(schema);
    expect(c.debts('m3')).toEqual([]);
  });

  it('keeps a recorded replica and the later deletion in order (another server may be placing it); cancels a replica only this process knows', async () => {
    const schema = freshSchema();
    const a = await open(schema);
    await a.owe('m3', replica(31, 'k31'));
    await a.owe('m3', { kind: 'destroy', object: ref(31, 'k31') });
    expect(a.debts('m3').map((d) => d.kind)).toEqual(['replica', 'destroy']);
    // A session object's replica never reaches the store: its deletion cancels it.
    await a.owe('m3', replica(32, 'session-key', false));
    await a.owe('m3', { kind: 'destroy', object: ref(32, 'session-key', false) });
    expect(a.debts('m3').map((d) => d.object.handle)).toEqual([31, 31]);
    const b = await open(schema);
    expect(b.debts('m3').map((d) => d.kind)).toEqual(['replica', 'destroy']);
  });

  it('fails a debt with ERR_JOURNAL while the server is down, keeps it in memory, and writes it once the server is back', async () => {
    const schema = freshSchema();
    const a = await open(schema);
    await server.stop({ immediate: true });
    try {
      const debt = replica(5, 'k5');
      await expect(a.owe('m3', debt)).rejects.toMatchObject({ code: 'ERR_JOURNAL' });
      // Not used for that object here meanwhile.
      expect(a.debts('m3')).toEqual([debt]);
      await expect(a.flush()).rejects.toBeInstanceOf(JournalError);
    } finally {
      await server.start();
    }
    await a.flush();
    const b = await open(schema);
    expect(b.debts('m3').map((d) => d.object.name)).toEqual([ref(5, 'k5').name]);
  });
  it('withdraws a debt recorded ahead while the server is down: gone here at once, its row removed once the server is back, and no settlement line', async () => {
    const schema = freshSchema();
    const a = await open(schema);
    const debt: Debt = { kind: 'destroy', object: ref(6, 'k6') };
    await a.owe('m3', debt);
    await server.stop({ immediate: true });
    try {
      await expect(a.withdraw('m3', debt)).rejects.toMatchObject({ code: 'ERR_JOURNAL' });
      expect(a.debts('m3')).toEqual([]);
    } finally {
      await server.start();
    }
    await a.flush();
    const db = new pg.Client({ connectionString: server.connectionString });
    await db.connect();
    try {
      expect((await db.query(`SELECT count(*)::int AS n FROM ${schema}.debts`)).rows[0]).toEqual({ n: 0 });
      expect((await db.query(`SELECT count(*)::int AS n FROM ${schema}.settlements`)).rows[0]).toEqual({ n: 0 });
    } finally {
      await db.end();
    }
  });
});
