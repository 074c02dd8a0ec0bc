/**
 * The exported surface of pkcs11-ha, pinned (STYLE habit 12): the runtime names of each
 * entry point of package.json "exports", and the full typed surface through API Extractor
 * against the committed reports in etc/ (which also fails when an exported signature uses
 * a type that is not exported). A change here must be deliberate: update the list below,
 * run `npm run api -- --local` and commit the reports with the change.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as main from '../../src/index.js';
import * as testbed from '../../src/testbed/softhsm-testbed.js';
import * as testing from '../../src/testing.js';
import * as facadeEntry from '../../src/pkcs11js.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Longest the declaration build and API Extractor may take together. */
const API_CHECK_TIMEOUT_MS = 120_000;

describe('public API', () => {
  it('pkcs11-ha exports exactly these runtime names', () => {
    expect(Object.keys(main).sort()).toEqual([
      'AdminError',
      'ClosedError',
      'CommandError',
      'CommandFailedError',
      'ConfigError',
      'DeadlineError',
      'DomainError',
      'FAILOVER_CHANNEL',
      'HaError',
      'HaGroup',
      'HostTransport',
      'InProcessTransport',
      'InvalidArgumentError',
      'InvalidHandleError',
      'JournalError',
      'LeastBusyScheduler',
      'MemberUnreachableError',
      'NoMemberAvailableError',
      'OPERATION_CHANNEL',
      'OperationRestartError',
      'PARAMETER_SHAPES',
      'PeakEwmaScheduler',
      'Pkcs11Error',
      'RECOVERY_CHANNEL',
      'ReplicationError',
      'VirtualSession',
      'VirtualSlot',
      'attributeType',
      'ckrName',
      'ckrValue',
      'classifyError',
      'classifyReturnValue',
      'fromRawAttributes',
      'systemClock',
      'toMechanism',
      'toRawTemplate',
    ]);
  });

  it('pkcs11-ha/testbed and pkcs11-ha/testing export exactly these runtime names', () => {
    expect(Object.keys(testbed).sort()).toEqual(['createTestbed', 'findSoftHsmModule', 'softHsmVersion']);
    expect(Object.keys(testing).sort()).toEqual(['internalsOf', 'seededRandom']);
  });

  it('pkcs11-ha/pkcs11js exports exactly these runtime names, and every pkcs11js constant on its default', () => {
    expect(Object.keys(facadeEntry).sort()).toEqual(['CONFIG_ENV', 'LABEL_ENV', 'NativeError', 'PKCS11', 'Pkcs11Error', 'default']);
    expect(facadeEntry.default.CKM_AES_GCM).toBeTypeOf('number');
    expect(facadeEntry.default.PKCS11).toBe(facadeEntry.PKCS11);
  });

  it(
    'the typed surface matches etc/*.api.md and uses no unexported type (API Extractor)',
    () => {
      const run = spawnSync(process.execPath, [join(ROOT, 'scripts', 'api-report.mjs')], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: API_CHECK_TIMEOUT_MS,
        env: { ...process.env, FORCE_COLOR: '0' },
      });
      const output = `${run.stdout}${run.stderr}`;
      expect(run.error, output).toBeUndefined();
      expect(run.status, output).toBe(0);
    },
    API_CHECK_TIMEOUT_MS + 10_000,
  );
});
