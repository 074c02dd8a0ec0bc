#!/usr/bin/env node
// Checks the public API of pkcs11-ha against its committed report, etc/pkcs11-ha.api.md:
//   1. builds the declarations of src/ (tsconfig.build.json, which strips @internal) into a
//      temporary folder, never into dist/;
//   2. runs API Extractor (api-extractor.json) on the `pkcs11-ha` entry point.
// Fails when the surface differs from the report, or when an exported signature uses a
// type the entry point does not export (ae-forgotten-export). After a deliberate change
// of the API, `npm run api -- --local` rewrites the report; commit it with the change.
//
// Usage: node scripts/api-report.mjs [--local]

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const { Extractor, ExtractorConfig } = require('@microsoft/api-extractor');

const local = process.argv.includes('--local');
const unknown = process.argv.slice(2).filter((a) => a !== '--local');
if (unknown.length > 0) {
  console.error(`api-report: unknown argument(s) ${unknown.join(' ')} (known: --local)`);
  process.exit(2);
}

const temp = mkdtempSync(join(tmpdir(), 'pkcs11-ha-api-'));
try {
  const declarations = join(temp, 'dts');
  const tsc = require.resolve('typescript/bin/tsc');
  const build = spawnSync(
    process.execPath,
    [tsc, '-p', join(root, 'tsconfig.build.json'), '--emitDeclarationOnly', '--declarationMap', 'false', '--sourceMap', 'false', '--outDir', declarations],
    { cwd: root, stdio: 'inherit' },
  );
  if (build.status !== 0) {
    console.error('api-report: building the declarations failed');
    process.exitCode = 1;
  } else {
    const configPath = join(root, 'api-extractor.json');
    const configObject = ExtractorConfig.loadFile(configPath);
    configObject.mainEntryPointFilePath = join(declarations, 'index.d.ts');
    configObject.apiReport = { ...configObject.apiReport, reportTempFolder: join(temp, 'report') };
    const config = ExtractorConfig.prepare({ configObject, configObjectFullPath: configPath, packageJsonFullPath: join(root, 'package.json') });
    const result = Extractor.invoke(config, {
      localBuild: local,
      printApiReportDiff: true,
      // The project's compiler, the one that built the declarations.
      typescriptCompilerFolder: dirname(require.resolve('typescript/package.json')),
    });
    if (result.succeeded) {
      console.log(result.apiReportChanged ? `api-report: ${config.reportFilePath} updated` : 'api-report: the API matches etc/pkcs11-ha.api.md');
    } else {
      console.error(
        `api-report: ${result.errorCount} error(s), ${result.warningCount} warning(s)` +
          (result.apiReportChanged && !local ? '; the API differs from the report: if the change is deliberate, run `npm run api -- --local` and commit the report' : ''),
      );
      process.exitCode = 1;
    }
  }
} finally {
  rmSync(temp, { recursive: true, force: true });
}
