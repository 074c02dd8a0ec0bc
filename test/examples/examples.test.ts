/**
 * Every example in examples/ runs, as a user runs it (`npx tsx examples/<name>.ts`), in a
 * child process with a bounded time: it must exit 0, print its marker line when it has
 * one in the table below (an example added later needs only exit 0), and leave nothing in
 * its temporary directory. The directory is read when the tests are collected, so a new
 * example is covered without touching this file. The demo (examples/demo.ts and
 * examples/demo/) has a test of its own.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
/** Longest an example may take; each finishes in seconds on an idle machine. */
const LIMIT_MS = 120_000;

/** The line each known example prints when everything it checks held. */
const MARKERS: Readonly<Record<string, string>> = {
  'basic.ts': 'basic: ok',
  'failover-events.ts': 'failover-events: ok',
  'standby.ts': 'standby: ok',
  'admin-cli.ts': 'admin-cli: ok',
  'metrics.ts': 'metrics: ok',
};

/** The examples to run: every examples/*.ts but the demo's. */
const files = readdirSync(EXAMPLES, { withFileTypes: true })
  .filter((e) => e.isFile() && e.name.endsWith('.ts') && e.name !== 'demo.ts')
  .map((e) => e.name)
  .sort();

interface Run {
  readonly code: number | null;
  readonly signal: string | null;
  readonly out: string;
  readonly err: string;
}

/** Runs one example with `TMPDIR` set to `tmp`, killing it after {@link LIMIT_MS}. */
function runExample(file: string, tmp: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', TSX, join(EXAMPLES, file)],
      { cwd: fileURLToPath(new URL('../../', import.meta.url)), env: { ...process.env, TMPDIR: tmp }, timeout: LIMIT_MS, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 },
      (error, out, err) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, signal: error?.signal ?? null, out, err });
      },
    );
  });
}

describe('examples', () => {
  it('finds the documented examples, and every marker names an example that exists', () => {
    expect(files).toEqual(expect.arrayContaining(Object.keys(MARKERS)));
  });

  it.each(files)('%s exits 0 with its marker and cleans up', async (file) => {
    const tmp = mkdtempSync(join(tmpdir(), 'pkcs11-ha-example-'));
    try {
      const run = await runExample(file, tmp);
      const tail = `\n--- stdout ---\n${run.out.slice(-3000)}\n--- stderr ---\n${run.err.slice(-3000)}`;
      expect(run.signal, `killed (over ${LIMIT_MS} ms?)${tail}`).toBeNull();
      expect(run.code, tail).toBe(0);
      const marker = MARKERS[file];
      if (marker !== undefined) expect(run.out.split('\n'), tail).toContain(marker);
      // Tokens and member host sockets live under TMPDIR; tsx keeps its cache there too.
      const left = readdirSync(tmp).filter((name) => !name.startsWith('tsx-'));
      expect(left, 'left behind in its temporary directory').toEqual([]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, LIMIT_MS + 10_000);
});
