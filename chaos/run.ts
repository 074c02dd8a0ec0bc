/**
 * `npm run chaos -- --duration <s> --seed <n> [--json PATH] [--workers <k>]`
 *
 * Runs the seeded chaos test (chaos/chaos-run.ts), prints the faults as they land, the
 * failures with their causes and the invariants, then the result as the last line (JSON,
 * the shape of the team's BENCH-FORMAT chaos result); writes it to PATH with --json.
 * Exits 1 when an operation failed or an invariant was breached, 2 on bad usage.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { invariantLines, passed, runChaos } from './chaos-run.js';

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\nusage: npm run chaos -- --duration <seconds> --seed <n> [--json PATH] [--workers <k>]\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      duration: { type: 'string', default: '60' },
      seed: { type: 'string', default: '1' },
      json: { type: 'string' },
      workers: { type: 'string', default: '4' },
    },
  }));
} catch (error) {
  usage((error as Error).message);
}
const durationS = Number(values.duration);
const seed = Number(values.seed);
const workers = Number(values.workers);
if (!Number.isFinite(durationS) || durationS < 5) usage(`--duration must be at least 5 seconds, got ${JSON.stringify(values.duration)}`);
if (!Number.isInteger(seed) || seed < 0) usage(`--seed must be a non-negative integer, got ${JSON.stringify(values.seed)}`);
if (!Number.isInteger(workers) || workers < 1) usage(`--workers must be a positive integer, got ${JSON.stringify(values.workers)}`);

const result = await runChaos({ durationS, seed, workers, log: (line) => console.log(line) });
console.log(`\n${result.operations} operations (${Object.entries(result.operationsByKind).map(([k, n]) => `${k} ${n}`).join(', ')})`);
console.log(`${result.faults} faults (${Object.entries(result.faultsByKind).map(([k, n]) => `${k} ${n}`).join(', ')}; ${result.faultsSkipped} skipped)`);
console.log(`keys: ${Object.entries(result.keys).map(([k, n]) => `${k} ${n}`).join(', ')}`);
if (result.failures.length > 0) {
  console.log(`\n${result.failures.length} failure(s) (${result.errors} counted):`);
  for (const f of result.failures.slice(0, 50)) {
    console.log(`  ${(f.atMs / 1000).toFixed(1).padStart(6)} s ${f.counted ? 'COUNTED' : 'noted  '} ${f.category}/${f.op}: ${f.code}: ${f.message} (down: ${f.down.join(', ') || 'none'})`);
  }
}
console.log('\ninvariants:');
for (const line of invariantLines(result)) console.log(line);
const summary = { seed: result.seed, durationS: result.durationS, operations: result.operations, faults: result.faults, errors: result.errors, invariants: result.invariants };
if (values.json !== undefined) writeFileSync(values.json, `${JSON.stringify({ ...summary, details: { ...result } }, null, 2)}\n`);
console.log(JSON.stringify(summary));
process.exitCode = passed(result) ? 0 : 1;
