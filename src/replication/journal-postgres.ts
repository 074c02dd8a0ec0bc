/**
 * The journal in PostgreSQL, shared by every application server of a fleet: one row per
 * debt and per tentative entry, each change one durable statement. A member is repaired
 * by whoever holds its claim: a session-level advisory lock (`pg_try_advisory_lock`) on a
 * connection of its own, taken without waiting; the member's debts are read under it and
 * each settlement deletes its row through that same connection, so a lost lock (the
 * connection dropped) fails the next settlement instead of letting two servers settle one
 * member. A holder that stops talking (frozen, cut off) loses its connection after
 * `claimTimeoutMs` and the lock with it. Each settled debt leaves a line in `settlements` (who, when): an audit of
 * repairs, at most one line per debt (its id is the key).
 *
 * The library creates and migrates the schema (`schema_version` holds the version; a
 * migration runs under a transaction-level advisory lock, so servers starting together
 * migrate once). The connection string is never printed: messages name the store by its
 * schema, and any text from the driver is scrubbed of the string and its password.
 */
import { hostname } from 'node:os';
import type { Pool, PoolClient } from 'pg';
import { decode, encode, isDebt, isTentative } from './journal-file.js';
import { JournalError, type Debt, type DebtClaim, type DebtRow, type DebtRows, type DebtStore, type TentativeEntry, type TentativeRow } from './journal-store.js';

/** The schema version this code writes; a newer one in the database is refused. */
export const POSTGRES_JOURNAL_VERSION = 1;

/** Options of a {@link PostgresDebtStore}. */
export interface PostgresJournalOptions {
  /** A libpq connection string or URI. Never printed. */
  readonly connectionString: string;
  /**
   * The schema holding the journal's tables (created when missing); several groups share
   * one journal by naming the same schema.
   * @default 'pkcs11_ha'
   */
  readonly schema?: string;
  /** Most connections the store opens (a claim holds one while a member is repaired). @default 4 */
  readonly maxConnections?: number;
  /** How long a statement or a connection attempt may take (ms). @default 10000 */
  readonly timeoutMs?: number;
  /** Who settles, as written in `settlements.settled_by`. @default `<hostname>:<pid>` */
  readonly clientId?: string;
  /**
   * How long a claim outlives a holder that stops talking (ms). The holder's claim
   * connection asks the server to end it after this long idle (`idle_session_timeout`), and
   * keeps it busy a few times per period while alive; a holder that is frozen (SIGSTOP, a
   * hung VM) or cut off loses the connection, and with it the lock, so another server
   * repairs the member. Its own next settlement then fails (see the module comment).
   * Needs PostgreSQL 14 or later (older servers: the claim lasts until its connection drops).
   * An integer of at least 100.
   * @default 30000
   */
  readonly claimTimeoutMs?: number;
  /**
   * Age after which another process's tentative entry is taken as abandoned (its creation
   * cannot still be running) and its strays may be removed (ms).
   * @default 600000
   */
  readonly staleTentativeMs?: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Migrations, in order; index i brings the schema to version i + 1. `S` is the schema. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE S.debts (
     id bigserial PRIMARY KEY, member text NOT NULL, kind text NOT NULL, object_name text NOT NULL,
     body jsonb NOT NULL, recorded_by text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now());
   CREATE INDEX debts_member ON S.debts (member, id);
   CREATE TABLE S.tentatives (
     id bigserial PRIMARY KEY, member text NOT NULL, body jsonb NOT NULL,
     recorded_by text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now());
   CREATE INDEX tentatives_member ON S.tentatives (member, id);
   CREATE TABLE S.settlements (
     debt_id bigint PRIMARY KEY, member text NOT NULL, kind text NOT NULL, object_name text NOT NULL,
     settled_by text NOT NULL, settled_at timestamptz NOT NULL DEFAULT now());`,
];

/**
 * A {@link DebtStore} in PostgreSQL (the `pg` driver).
 *
 * @example
 * const journal = new SharedJournal(new PostgresDebtStore({ connectionString: process.env.JOURNAL_URL! }));
 * await journal.load();
 */
export class PostgresDebtStore implements DebtStore {
  readonly #o: PostgresJournalOptions;
  readonly #schema: string;
  readonly #clientId: string;
  readonly #claimTimeoutMs: number;
  #pool: Pool | undefined;
  #closed = false;

  /** @throws {@link JournalError} for a schema name that is not a plain lower-case identifier */
  constructor(options: PostgresJournalOptions) {
    this.#o = options;
    this.#schema = options.schema ?? 'pkcs11_ha';
    this.#clientId = options.clientId ?? `${hostname()}:${process.pid}`;
    if (!SCHEMA_NAME.test(this.#schema)) throw new JournalError(this.location, 'io', `the schema name must be a lower-case identifier, got ${JSON.stringify(this.#schema)}`);
    this.#claimTimeoutMs = options.claimTimeoutMs ?? 30_000;
    if (!Number.isInteger(this.#claimTimeoutMs) || this.#claimTimeoutMs < 100) throw new JournalError(this.location, 'io', `claimTimeoutMs must be an integer of at least 100, got ${String(options.claimTimeoutMs)}`);
  }

  /** `postgresql:<schema>`: never the connection string. */
  get location(): string {
    return `postgresql:${this.#schema}`;
  }

  async load(): Promise<DebtRows> {
    await this.#run('be migrated', async () => {
      const client = await this.#connect();
      try {
        await this.#migrate(client);
      } finally {
        client.release();
      }
    });
    return this.read();
  }

  read(): Promise<DebtRows> {
    return this.#run('be read', async () => {
      const pool = await this.#poolOf();
      return rowsOf(
        (await pool.query<RawRow>(`SELECT id::text, member, body::text FROM ${this.#schema}.debts ORDER BY id`)).rows,
        (await pool.query<RawRow>(`${this.#tentativeQuery} ORDER BY id`, [this.#staleSeconds])).rows,
      );
    });
  }

  record(member: string, debt: Debt): Promise<string> {
    return this.#run('record a debt', async () => {
      const pool = await this.#poolOf();
      const r = await pool.query<{ id: string }>(
        `INSERT INTO ${this.#schema}.debts (member, kind, object_name, body, recorded_by) VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id::text`,
        [member, debt.kind, debt.object.name, JSON.stringify(debt, encode), this.#clientId],
      );
      return r.rows[0]!.id;
    });
  }

  recordTentative(member: string, entry: TentativeEntry): Promise<string> {
    return this.#run('record a tentative entry', async () => {
      const pool = await this.#poolOf();
      const r = await pool.query<{ id: string }>(`INSERT INTO ${this.#schema}.tentatives (member, body, recorded_by) VALUES ($1, $2::jsonb, $3) RETURNING id::text`, [
        member,
        JSON.stringify({ searches: entry.searches }, encode),
        this.#clientId,
      ]);
      return r.rows[0]!.id;
    });
  }

  settle(id: string): Promise<boolean> {
    return this.#run('settle a debt', async () => this.#settleOn(await this.#poolOf(), id));
  }

  remove(ids: { readonly debts?: readonly string[]; readonly tentatives?: readonly string[] }): Promise<void> {
    return this.#run('remove entries', async () => {
      const pool = await this.#poolOf();
      if (ids.debts?.length) await pool.query(`DELETE FROM ${this.#schema}.debts WHERE id = ANY($1::bigint[])`, [ids.debts]);
      if (ids.tentatives?.length) await pool.query(`DELETE FROM ${this.#schema}.tentatives WHERE id = ANY($1::bigint[])`, [ids.tentatives]);
    });
  }

  removeMember(member: string): Promise<void> {
    return this.#run('forget a member', async () => {
      const pool = await this.#poolOf();
      await pool.query(`DELETE FROM ${this.#schema}.debts WHERE member = $1`, [member]);
      await pool.query(`DELETE FROM ${this.#schema}.tentatives WHERE member = $1`, [member]);
    });
  }

  claim(member: string): Promise<DebtClaim | undefined> {
    return this.#run('claim a member', async () => {
      const client = await this.#connect();
      const lockArgs = [`pkcs11-ha:${this.#schema}`, member];
      try {
        const got = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS ok', lockArgs);
        if (!got.rows[0]!.ok) {
          client.release();
          return undefined;
        }
        const timed = await this.#limitIdle(client);
        const rows = rowsOf(
          (await client.query<RawRow>(`SELECT id::text, member, body::text FROM ${this.#schema}.debts WHERE member = $1 ORDER BY id`, [member])).rows,
          (await client.query<RawRow>(`${this.#tentativeQuery} WHERE member = $2 ORDER BY id`, [this.#staleSeconds, member])).rows,
        );
        // Started once nothing can throw before the claim is handed out (a timer on a released connection would run for ever).
        const alive = timed ? setInterval(() => void client.query('SELECT 1').catch(() => undefined), this.#claimTimeoutMs / 4) : undefined;
        alive?.unref();
        let released = false;
        return {
          ...rows,
          settle: (id: string) => this.#run('settle a debt', () => this.#settleOn(client, id)),
          release: async () => {
            if (released) return;
            released = true;
            clearInterval(alive);
            try {
              await client.query('SELECT pg_advisory_unlock(hashtext($1), hashtext($2))', lockArgs);
              if (timed) await client.query('RESET idle_session_timeout');
              client.release();
            } catch (error) {
              // The connection is gone, and the lock with it: never reuse it.
              client.release(error as Error);
            }
          },
        };
      } catch (error) {
        client.release(error as Error);
        throw error;
      }
    });
  }

  /**
   * Asks the server to end the claim connection after `claimTimeoutMs` idle; false on a
   * server older than PostgreSQL 14 (no `idle_session_timeout`): there a frozen holder keeps
   * its claim until its connection drops.
   */
  async #limitIdle(client: PoolClient): Promise<boolean> {
    try {
      // (SET takes no parameters: the number is an integer checked by the constructor.)
      await client.query(`SET idle_session_timeout = ${this.#claimTimeoutMs}`);
      return true;
    } catch (error) {
      if ((error as { code?: unknown }).code === '42704') return false; // unrecognized configuration parameter
      throw error;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.end().catch(() => undefined);
  }

  get #tentativeQuery(): string {
    return `SELECT id::text, member, body::text, recorded_at < now() - make_interval(secs => $1) AS stale FROM ${this.#schema}.tentatives`;
  }

  get #staleSeconds(): number {
    return (this.#o.staleTentativeMs ?? 600_000) / 1000;
  }

  async #settleOn(db: Pick<Pool, 'query'>, id: string): Promise<boolean> {
    const r = await db.query(
      `WITH d AS (DELETE FROM ${this.#schema}.debts WHERE id = $1 RETURNING id, member, kind, object_name)
       INSERT INTO ${this.#schema}.settlements (debt_id, member, kind, object_name, settled_by) SELECT id, member, kind, object_name, $2 FROM d`,
      [id, this.#clientId],
    );
    return r.rowCount === 1;
  }

  async #migrate(client: PoolClient): Promise<void> {
    const s = this.#schema;
    await client.query('BEGIN');
    try {
      // Servers that start together migrate one after the other.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`pkcs11-ha-migrate:${s}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      const current = (await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${s}.schema_version`)).rows[0]!.v ?? 0;
      if (current > POSTGRES_JOURNAL_VERSION) {
        throw new JournalError(this.location, 'version', `written by a newer version (schema version ${current}; this code knows up to ${POSTGRES_JOURNAL_VERSION})`);
      }
      for (let v = current; v < MIGRATIONS.length; v++) {
        await client.query(MIGRATIONS[v]!.replaceAll('S.', `${s}.`));
        await client.query(`INSERT INTO ${s}.schema_version (version) VALUES ($1)`, [v + 1]);
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  }

  async #poolOf(): Promise<Pool> {
    if (this.#closed) throw new JournalError(this.location, 'io', 'the store is closed');
    if (this.#pool === undefined) {
      const { default: pg } = await import('pg');
      const timeout = this.#o.timeoutMs ?? 10_000;
      const pool = new pg.Pool({
        connectionString: this.#o.connectionString,
        max: this.#o.maxConnections ?? 4,
        connectionTimeoutMillis: timeout,
        query_timeout: timeout,
        statement_timeout: timeout,
        application_name: 'pkcs11-ha',
      });
      // An idle connection that drops (the server stopped) must not crash the process; the next statement reports it.
      pool.on('error', () => undefined);
      // Likewise a checked-out one (a claim's): one listener per connection, added when the pool opens it.
      pool.on('connect', (client) => client.on('error', () => undefined));
      this.#pool = pool;
    }
    return this.#pool;
  }

  /** A connection of the pool's (one that drops is reported by its next statement: see the pool's `connect` listener). */
  async #connect(): Promise<PoolClient> {
    return (await this.#poolOf()).connect();
  }

  /** Runs `op`, turning any failure into a {@link JournalError} whose message carries no credential. */
  async #run<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (error) {
      if (error instanceof JournalError) throw error;
      const code = (error as { code?: unknown }).code;
      const detail = this.#redact(error instanceof Error ? error.message : String(error));
      throw new JournalError(this.location, 'io', `cannot ${what}: ${detail}${typeof code === 'string' && !detail.includes(code) ? ` (${code})` : ''}`);
    }
  }

  /** Removes the connection string and its password from a driver's message. */
  #redact(text: string): string {
    let out = text.split(this.#o.connectionString).join('<connection string>');
    for (const secret of secretsOf(this.#o.connectionString)) out = out.split(secret).join('***');
    return out;
  }
}

type RawRow = { id: string; member: string; body: string; stale?: boolean };

function rowsOf(debts: readonly RawRow[], tentatives: readonly RawRow[]): DebtRows {
  const d: DebtRow[] = [];
  for (const r of debts) {
    const body: unknown = JSON.parse(r.body, decode);
    // A row another version wrote and this one cannot read stays where it is, unused.
    if (isDebt(body)) d.push({ id: r.id, member: r.member, debt: body });
  }
  const t: TentativeRow[] = [];
  for (const r of tentatives) {
    const body: unknown = JSON.parse(r.body, decode);
    if (isTentative(body)) t.push({ id: r.id, member: r.member, entry: { searches: body.searches }, stale: r.stale === true });
  }
  return { debts: d, tentatives: t };
}

/** The password of a URI or keyword/value connection string, to scrub from messages. */
function secretsOf(connectionString: string): string[] {
  const out: string[] = [];
  try {
    const url = new URL(connectionString);
    if (url.password) out.push(url.password, decodeURIComponent(url.password));
    const query = url.searchParams.get('password');
    if (query) out.push(query);
  } catch {
    // keyword/value form
  }
  for (const m of connectionString.matchAll(/password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/gi)) out.push(m[1]!.replace(/^'|'$/g, ''));
  return out.filter((s) => s.length > 0);
}
