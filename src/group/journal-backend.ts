/**
 * The journal a group keeps what members owe in: the file (`journalPath`), in memory, or
 * PostgreSQL shared by every application server (`journal: { postgres }`).
 */
import { Journal, type DebtJournal } from '../replication/journal.js';
import { PostgresDebtStore } from '../replication/journal-postgres.js';
import { SharedJournal } from '../replication/journal-shared.js';
import type { ResolvedGroupConfig } from './group-config.js';

/** Builds the configured journal; it touches no file or server until `load()`. */
export function createJournal(config: Pick<ResolvedGroupConfig, 'journalPath' | 'journalPostgres'>): DebtJournal {
  const pg = config.journalPostgres;
  if (pg === undefined) return new Journal(config.journalPath);
  const store = new PostgresDebtStore({ connectionString: pg.connectionString.reveal(), claimTimeoutMs: pg.claimTimeoutMs, ...(pg.schema === undefined ? {} : { schema: pg.schema }) });
  return new SharedJournal(store, { refreshIntervalMs: pg.refreshIntervalMs });
}
