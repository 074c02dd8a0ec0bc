/**
 * The demo (examples/demo.ts) run as a user runs it: a child process, in its short mode.
 * One run to its end (its verdict, the promoted standby, the verified resync, the chart),
 * and one interrupted with SIGINT while its load runs (nothing left behind: its temporary
 * directory and the member host processes it reported).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { isGone } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** A running demo: its output so far and its exit. */
interface DemoRun {
  readonly child: ChildProcess;
  out: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const runs: DemoRun[] = [];
const dirs: string[] = [];

/** Starts the demo in its short mode, plain output; `env` adds to the environment. */
function startDemo(args: readonly string[], env: Readonly<Record<string, string>> = {}): DemoRun {
  const child = spawn(process.execPath, ['--import', TSX, 'examples/demo.ts', '--short', '--plain', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const run = { child, out: () => out, exited };
  runs.push(run);
  return run;
}

/** The temporary directory and the member host pids the demo reported. */
function reported(out: string): { dir: string; pids: number[] } {
  const dir = /temporary directory: (\S+)/.exec(out)?.[1];
  if (dir === undefined) throw new Error(`the demo reported no temporary directory:\n${out}`);
  const pids = [...out.matchAll(/member host \S+: pid (\d+)/g)].map((m) => Number(m[1]));
  return { dir, pids };
}

afterEach(async () => {
  // A demo that outlived its test (a failed expectation) is stopped the way a user would.
  for (const run of runs.splice(0)) {
    if (run.child.exitCode === null && run.child.signalCode === null) {
      run.child.kill('SIGINT');
      await Promise.race([run.exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
    }
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('the demo', () => {
  it('runs to its end: no failed operation, the standby promoted, the resync verified, the chart written', async () => {
    const outDir = mkdtempSync(join(tmpdir(), 'pkcs11-ha-demo-test-'));
    dirs.push(outDir);
    const chart = join(outDir, 'timeline.svg');
    const run = startDemo(['--chart', chart]);
    const { code } = await run.exited;
    const out = run.out();
    expect(code, out).toBe(0);
    expect(out).toMatch(/^ {2}failed operations: 0$/m);
    expect(out).toMatch(/^ {2}operations: [1-9]\d* ok, 0 failed/m);
    expect(out).toMatch(/event standbyPromoted: demo-hsm-4/);
    expect(out).toMatch(/^ {2}standby promoted: demo-hsm-4$/m);
    // demo-hsm-1 was down while 3 keys were made and 2 destroyed, and while one more was made.
    expect(out).toMatch(/event resyncProgress: demo-hsm-1 settled 7\/7/);
    for (const member of ['demo-hsm-1', 'demo-hsm-2', 'demo-hsm-3', 'demo-hsm-4']) {
      expect(out).toContain(`verified ${member}: 7 living keys present and working, 2 destroyed keys gone`);
    }
    expect(out).toMatch(/^ {2}resync verified: yes /m);
    expect(out).toMatch(/^ {2}demo: OK$/m);
    expect(out).toContain(`timeline chart: ${chart}`);
    const svg = readFileSync(chart, 'utf8');
    expect(svg.startsWith('<?xml')).toBe(true);
    expect(svg).toMatch(/<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>/);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('demo-hsm-4 promoted');
    // And nothing left behind after a normal exit.
    const { dir, pids } = reported(out);
    expect(pids.length).toBeGreaterThanOrEqual(7); // 4 at the start, 3 after the recovery
    expect(existsSync(dir)).toBe(false);
    await until(() => pids.every(isGone), `the member hosts ${pids.join(', ')} to be gone`, 10_000, 50);
  }, 120_000);

  it('cleans up on SIGINT while the load runs: its temporary directory, member host sockets and processes are gone', async () => {
    // A TMPDIR of its own: the tokens and the member hosts' socket directories are made there.
    const tmp = mkdtempSync(join(tmpdir(), 'pkcs11-ha-demo-test-'));
    const outDir = mkdtempSync(join(tmpdir(), 'pkcs11-ha-demo-test-'));
    dirs.push(tmp, outDir);
    const run = startDemo(['--chart', join(outDir, 'timeline.svg')], { TMPDIR: tmp });
    await until(() => run.out().includes('mixed load:') || run.child.exitCode !== null, 'the demo to start its load', 90_000, 50);
    const { dir, pids } = reported(run.out());
    expect(pids).toHaveLength(4);
    expect(existsSync(dir)).toBe(true);
    // tsx keeps its cache under TMPDIR too; everything else there is the demo's.
    const ours = (): string[] => readdirSync(tmp).filter((name) => !name.startsWith('tsx-'));
    // The tokens' directory, and a socket directory per member host.
    expect(ours()).toContain(basename(dir));
    expect(ours().length).toBeGreaterThanOrEqual(1 + pids.length);
    expect(pids.filter(isGone)).toEqual([]); // all alive now, so that "gone" below means something
    run.child.kill('SIGINT');
    const { code } = await run.exited;
    expect(code, run.out()).toBe(130);
    expect(run.out()).toContain('SIGINT: stopping');
    await until(() => !existsSync(dir), `${dir} to be removed`, 10_000, 50);
    await until(() => pids.every(isGone), `the member hosts ${pids.join(', ')} to be gone`, 10_000, 50);
    expect(ours()).toEqual([]);
  }, 120_000);
});
