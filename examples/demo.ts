/**
 * The demo: four SoftHSM2 tokens made on the spot (three active, one standby), each behind
 * a member host process, joined into one virtual slot with one security domain. Keys are
 * made through the slot (so replicated to every member) and a mixed load runs: AES-GCM,
 * HMAC, ECDSA and SHA-256 single-part, HMAC and AES-GCM multi-part, every result checked.
 * Meanwhile:
 *
 *   1. one member host (the primary's) is killed with SIGKILL; keys are made and destroyed
 *      while it is down (it owes them);
 *   2. the two other active hosts are frozen with SIGSTOP (hung HSMs): the group fails them
 *      when their deadline passes, kills them, and promotes the standby, which carries the
 *      load alone; one more key is made on it;
 *   3. every member is recovered (`group.recover`) and resynchronised: it settles what it
 *      owes before it takes traffic again, and the standby steps back;
 *   4. each token is then opened ALONE and checked: every living key is there and works
 *      (same MAC, same plaintext, signatures verify), every destroyed key is gone.
 *
 * A live status table shows the members on a terminal (plain lines otherwise); at the end a
 * summary, and the failover timeline as an SVG chart whose path is printed.
 *
 *   npm run demo                       (about 30 s)
 *   npm run demo -- --short            (phases of 1 s instead of 3: what the test runs)
 *   npm run demo -- --chart out.svg    (default: <os tmpdir>/pkcs11-ha-demo-timeline.svg)
 *   npm run demo -- --callers 16       (concurrent callers of the load; default 8, 4 when short)
 *   npm run demo -- --plain            (plain lines even on a terminal)
 *
 * Exit code: 0 when no operation failed, the standby was promoted, every member recovered
 * and every token verified; 1 otherwise; 2 on a bad option; 130/143 on Ctrl-C/SIGTERM.
 * The tokens live in a temporary directory, removed on every exit, Ctrl-C included; the
 * member host processes are stopped (and their socket directories removed) with them.
 *
 * The helper modules are in examples/demo/. In an application the imports are
 * `pkcs11-ha` and `pkcs11-ha/testbed`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Cleanup } from './demo/cleanup.js';
import { OPERATIONS } from './demo/load.js';
import { parseDemoOptions, UsageError, type DemoOptions } from './demo/options.js';
import { Screen } from './demo/screen.js';
import { runStory, type StoryResult } from './demo/story.js';
import { timelineSvg } from './demo/timeline-svg.js';
import { exitCodeFor, problems } from './demo/verdict.js';

let options: DemoOptions;
try {
  options = parseDemoOptions(process.argv.slice(2));
} catch (error) {
  if (!(error instanceof UsageError)) throw error;
  console.error(`demo: ${error.message}`);
  process.exit(2);
}

const screen = new Screen(process.stdout, options.plain);
const cleanup = new Cleanup();
const report = (line: string): void => screen.notice(line);
cleanup.onSignals((signal) => {
  screen.mute();
  screen.notice(`${signal}: stopping, closing the group and removing the temporary directory ...`);
}, report);

function summary(result: StoryResult, wrong: readonly string[]): void {
  const load = result.load;
  screen.print();
  screen.print('summary');
  screen.print(`  operations: ${load.ok} ok, ${load.failed} failed, in ${result.seconds.toFixed(1)} s (${Math.round(load.ok / result.seconds)} ops/s with ${options.callers} callers)`);
  for (const name of OPERATIONS) {
    const c = load.counts.get(name)!;
    screen.print(`    ${name.padEnd(20)} ${String(c.ok).padStart(8)} ok ${String(c.failed).padStart(4)} failed`);
  }
  screen.print(`  failed operations: ${load.failed}`);
  screen.print(`  standby promoted: ${result.promoted.length > 0 ? result.promoted.join(', ') : 'none'}`);
  screen.print(`  resync: ${[...result.resynced].map(([m, n]) => `${m} settled ${n} owed item(s)`).join(', ') || 'nothing owed'}`);
  screen.print(`  made while members were down: ${result.keysCreatedWhileDown.join(', ')}; destroyed: ${result.keysDestroyedWhileDown.join(', ')}`);
  const verified = result.verdicts.filter((v) => v.problems.length === 0).map((v) => v.member);
  screen.print(`  resync verified: ${verified.length === result.verdicts.length ? `yes (${verified.join(', ')}, each token opened alone)` : `NO (${result.verdicts.length - verified.length} member(s) failed the check)`}`);
  screen.print(`  demo: ${wrong.length === 0 ? 'OK' : `FAILED: ${wrong.join(' | ')}`}`);
}

let exitCode = 1;
try {
  const result = await runStory(options, screen, cleanup);
  const wrong = problems(result);
  const svg = timelineSvg(
    result.timeline,
    'pkcs11-ha demo: failover timeline',
    `${result.load.ok} operations, ${result.load.failed} failed; ${options.callers} callers; one host killed, two frozen, standby promoted, all recovered and verified: ${wrong.length === 0 ? 'yes' : 'NO'}`,
  );
  mkdirSync(dirname(options.chartPath), { recursive: true });
  writeFileSync(options.chartPath, svg);
  summary(result, wrong);
  screen.print(`  timeline chart: ${options.chartPath}`);
  exitCode = exitCodeFor(wrong);
} catch (error) {
  if (cleanup.interrupted === undefined) screen.notice(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
} finally {
  await cleanup.run(report);
}
// A signal's handler exits on its own once the cleanup is done.
if (cleanup.interrupted === undefined) process.exit(exitCode);
