/**
 * A process that claims one member in a PostgreSQL journal and holds the claim until its
 * parent disconnects: the server that freezes in claim tests (the test sends it SIGSTOP).
 * Settings come from the environment: CLAIM_DB, CLAIM_SCHEMA, CLAIM_MEMBER, CLAIM_TIMEOUT_MS.
 */
import { PostgresDebtStore } from '../../src/replication/journal-postgres.js';

const env = process.env;
const store = new PostgresDebtStore({ connectionString: env.CLAIM_DB!, schema: env.CLAIM_SCHEMA!, claimTimeoutMs: Number(env.CLAIM_TIMEOUT_MS), clientId: 'claim-holder' });
await store.load();
const claim = await store.claim(env.CLAIM_MEMBER!);
process.send!({ claimed: claim !== undefined });
// The IPC channel keeps the process alive; it ends with it.
process.on('disconnect', () => void store.close().finally(() => process.exit(0)));
