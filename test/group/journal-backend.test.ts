/**
 * The journal a group is given: the file (or memory) by default, PostgreSQL with
 * `journal: { postgres }`; its connection string read like a PIN and never shown.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors/ha-error.js';
import { resolveGroupConfig, type GroupConfig } from '../../src/group/group-config.js';
import { createJournal } from '../../src/group/journal-backend.js';
import { Journal } from '../../src/replication/journal.js';
import { SharedJournal } from '../../src/replication/journal-shared.js';

const URL = 'postgresql://app:s3cret-pw@db.example:5432/hsm';
const members = [{ module: '/opt/hsm/libsofthsm2.so', token: { label: 'a' } }];

function refusal(config: GroupConfig): ConfigError {
  try {
    resolveGroupConfig(config);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('accepted a bad config');
}

describe('journal backends', () => {
  it('keeps the file (or memory) journal by default', () => {
    expect(createJournal(resolveGroupConfig({ members }))).toBeInstanceOf(Journal);
    expect(createJournal(resolveGroupConfig({ members, journalPath: '/tmp/j.json' }))).toBeInstanceOf(Journal);
  });

  it('builds a shared PostgreSQL journal whose connection string never shows', () => {
    const resolved = resolveGroupConfig({ members, journal: { postgres: { connectionString: URL, schema: 'fleet_a', refreshIntervalMs: 250 } } });
    expect(resolved.journalPostgres).toMatchObject({ schema: 'fleet_a', refreshIntervalMs: 250 });
    expect(resolved.journalPostgres!.connectionString.reveal()).toBe(URL);
    for (const shown of [JSON.stringify(resolved), inspect(resolved, { depth: 10 }), String(resolved.journalPostgres!.connectionString)]) {
      expect(shown).not.toContain('s3cret-pw');
    }
    const journal = createJournal(resolved);
    expect(journal).toBeInstanceOf(SharedJournal);
    expect(journal.refreshIntervalMs).toBe(250);
    expect((journal as SharedJournal).location).toBe('postgresql:fleet_a');
  });

  it('reads the connection string from an environment variable, and names a missing one without a value', () => {
    process.env.PKCS11_HA_TEST_JOURNAL = URL;
    try {
      const resolved = resolveGroupConfig({ members, journal: { postgres: { connectionString: { env: 'PKCS11_HA_TEST_JOURNAL' } } } });
      expect(resolved.journalPostgres!.connectionString.reveal()).toBe(URL);
      expect(resolved.journalPostgres!.refreshIntervalMs).toBe(1000);
    } finally {
      delete process.env.PKCS11_HA_TEST_JOURNAL;
    }
    const error = refusal({ members, journal: { postgres: { connectionString: { env: 'PKCS11_HA_TEST_JOURNAL' } } } });
    expect(error.message).toContain('journal.postgres.connectionString');
  });

  it('refuses a file and PostgreSQL together, a bad schema name and a bad interval', () => {
    expect(refusal({ members, journalPath: '/tmp/j.json', journal: { postgres: { connectionString: URL } } }).message).toContain('not both');
    const badSchema = refusal({ members, journal: { postgres: { connectionString: URL, schema: 'Drop Table' } } });
    expect(badSchema.message).toContain('schema');
    expect(badSchema.message).not.toContain('s3cret-pw');
    expect(refusal({ members, journal: { postgres: { connectionString: URL, refreshIntervalMs: 0 } } }).message).toContain('refreshIntervalMs');
  });
});
