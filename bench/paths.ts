/**
 * Where the benchmark's files are, whether it runs from its TypeScript sources (tsx) or
 * compiled into `.bench-build/` (`npm run bench`): results and charts always go to the
 * source tree's `bench/`, and a child script is the sibling with this file's extension.
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The directory `npm run bench` compiles into (tsconfig.bench.json's outDir). */
const BUILD_DIR = '/.bench-build/';

const compiled = import.meta.url.includes(BUILD_DIR);

/** The source tree's `bench/` directory (with a trailing slash). */
export const BENCH_DIR = fileURLToPath(new URL(compiled ? '../../bench/' : './', import.meta.url));

/** Where results are written: `bench/results/` of the source tree. */
export const RESULTS_DIR = `${BENCH_DIR}results/`;

/** Path of a script of the benchmark run as its own process, e.g. `limit-child`, in the form this run uses. */
export function benchScript(name: string): string {
  return fileURLToPath(new URL(`./${name}${extname(fileURLToPath(import.meta.url))}`, import.meta.url));
}
