#!/usr/bin/env node
// Checks the public API of pkcs11-ha against its committed reports in etc/:
//   1. builds the declarations of src/ (tsconfig.build.json, which strips @internal) into a
//      temporary folder, never into dist/;
//   2. runs API Extractor (api-extractor.json) on each pinned entry point of package.json
//      "exports": `pkcs11-ha` (etc/pkcs11-ha.api.md) and `pkcs11-ha/testbed`
//      (etc/pkcs11-ha-testbed.api.md). `pkcs11-ha/testing` (internals for tests) is not pinned.
// Fails when a surface differs from its report, or when an exported signature uses a type
// its entry point does not export (ae-forgotten-export). After a deliberate change of the
// API, `npm run api -- --local` rewrites the reports; commit them with the change.
//
// Usage: node scripts/api-report.mjs [--local]

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const { CompilerState, Extractor, ExtractorConfig } = require('@microsoft/api-extractor');

/** Pinned entry points: declaration file (under the build's outDir) and report name. */
const ENTRY_POINTS = [
  { declarations: 'index.d.ts', report: 'pkcs11-ha.api.md' },
  { declarations: 'testbed/softhsm-testbed.d.ts', report: 'pkcs11-ha-testbed.api.md' },
];

const local = process.argv.includes('--local');
const unknown = process.argv.slice(2).filter((a) => a !== '--local');
if (unknown.length > 0) {
  console.error(`api-report: unknown argument(s) ${unknown.join(' ')} (known: --local)`);
  process.exit(2);
}

const temp = mkdtempSync(join(tmpdir(), 'pkcs11-ha-api-'));
try {
  const outDir = join(temp, 'dts');
  const tsc = require.resolve('typescript/bin/tsc');
  const build = spawnSync(
    process.execPath,
    [tsc, '-p', join(root, 'tsconfig.build.json'), '--emitDeclarationOnly', '--declarationMap', 'false', '--sourceMap', 'false', '--outDir', outDir],
    { cwd: root, stdio: 'inherit' },
  );
  if (build.status !== 0) throw new Error('building the declarations failed');

  const configPath = join(root, 'api-extractor.json');
  const configs = ENTRY_POINTS.map(({ declarations, report }) => {
    const configObject = ExtractorConfig.loadFile(configPath);
    configObject.mainEntryPointFilePath = join(outDir, declarations);
    configObject.apiReport = { ...configObject.apiReport, reportFileName: report, reportTempFolder: join(temp, 'report') };
    return ExtractorConfig.prepare({ configObject, configObjectFullPath: configPath, packageJsonFullPath: join(root, 'package.json') });
  });
  // One compiler analysis for all entry points.
  const compilerState = CompilerState.create(configs[0], { additionalEntryPoints: configs.slice(1).map((c) => c.mainEntryPointFilePath) });

  let failed = false;
  for (const config of configs) {
    const result = Extractor.invoke(config, { localBuild: local, printApiReportDiff: true, compilerState });
    const report = relative(root, config.reportFilePath);
    if (result.succeeded) {
      console.log(result.apiReportChanged ? `api-report: ${report} updated` : `api-report: the API matches ${report}`);
    } else {
      failed = true;
      console.error(
        `api-report: ${report}: ${result.errorCount} error(s), ${result.warningCount} warning(s)` +
          (result.apiReportChanged && !local ? '; the API differs from the report: if the change is deliberate, run `npm run api -- --local` and commit the report' : ''),
      );
    }
  }
  if (failed) process.exitCode = 1;
} catch (error) {
  console.error(`api-report: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  rmSync(temp, { recursive: true, force: true });
}
