/** bench/paths.ts: results land in the source tree's bench/ however the benchmark runs. */
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BENCH_DIR, RESULTS_DIR, benchScript } from '../../bench/paths.js';

describe('bench paths', () => {
  it('from the sources: bench/ of the source tree, and a child script in TypeScript', () => {
    expect(existsSync(`${BENCH_DIR}run.ts`)).toBe(true);
    expect(RESULTS_DIR).toBe(`${BENCH_DIR}results/`);
    const child = benchScript('limit-child');
    expect(basename(child)).toBe('limit-child.ts');
    expect(existsSync(child)).toBe(true);
  });
});
