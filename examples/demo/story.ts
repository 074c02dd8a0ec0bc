/**
 * The story the demo tells, step by step: tokens, the security domain, keys, a mixed load,
 * one member host killed while keys change, the active members stopped so that the standby
 * is promoted, every member recovered and resynchronised, and the resync verified token by
 * token. Returns what happened; the entry point judges it and prints the summary.
 */
import { HaGroup, type GroupConfig } from '../../src/index.js';
import { createTestbed } from '../../src/testbed/softhsm-testbed.js';
import type { Cleanup } from './cleanup.js';
import { Hosts } from './hosts.js';
import { destroyKey, makeKey, type DemoKey } from './keys.js';
import { MixedLoad } from './load.js';
import { Monitor } from './monitor.js';
import type { DemoOptions } from './options.js';
import type { Screen } from './screen.js';
import { Timeline } from './timeline.js';
import { verifyMember, type MemberVerdict } from './verify.js';

/** What the story saw, for the summary and the verdict. */
export interface StoryResult {
  readonly load: MixedLoad;
  readonly timeline: Timeline;
  readonly seconds: number;
  /** Standby members promoted while the actives were down. */
  readonly promoted: readonly string[];
  /** Owed items settled by each recovered member (from `resyncProgress`). */
  readonly resynced: ReadonlyMap<string, number>;
  /** Members that did not serve again after `recover()`. */
  readonly notRecovered: readonly string[];
  /** Items still owed after the recovery (should be none). */
  readonly stillOwed: number;
  readonly verdicts: readonly MemberVerdict[];
  readonly keysCreatedWhileDown: readonly string[];
  readonly keysDestroyedWhileDown: readonly string[];
}

const MEMBERS = 4;
const ROLES = ['active', 'active', 'active', 'standby'] as const;

/** Waits until `done()` holds, polling every 25 ms, for at most `limitMs`. */
async function waitFor(done: () => boolean, what: string, limitMs = 15_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const pause = (seconds: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/** Runs the story. Everything it makes is handed to `cleanup` as soon as it exists. */
export async function runStory(options: DemoOptions, screen: Screen, cleanup: Cleanup): Promise<StoryResult> {
  const log = (line: string): void => screen.log(line);

  const bed = await cleanup.adopt('remove the tokens', createTestbed({ count: MEMBERS, labelPrefix: 'demo-hsm' }), (b) => b.dispose());
  cleanup.directory(bed.dir);
  log(`temporary directory: ${bed.dir}`);
  const members = bed.memberConfigs({ roles: [...ROLES] });
  const names = members.map((m) => m.name);
  const [first, second, third, standby] = names as [string, string, string, string];
  log(`${MEMBERS} SoftHSM2 tokens: ${first}, ${second}, ${third} active, ${standby} standby`);

  // The ceremony runs once per set of tokens, and needs no crash isolation: in this process.
  const domain = await HaGroup.initDomain({ members, transport: 'in-process', threadsPerMember: 1 });
  log(`security domain: one AES-256 domain key on every member, check value ${domain.checkValue.slice(0, 12)}...`);

  const hosts = new Hosts(cleanup);
  const config: GroupConfig = {
    members,
    // Short timings so that the story fits in seconds (defaults: 20 s and 1 s).
    deadlineMs: 1500,
    heartbeatIntervalMs: 250,
    // One worker thread per member host for its long calls (key generation, unwrap,
    // searches): plenty for a demo, and each host starts sooner.
    threadsPerMember: 1,
    // No automatic recovery: the killed member stays down while keys change, and the
    // story recovers members itself (as `pkcs11-ha recover <member>` does). In production
    // the background loop brings a member back every `recovery.intervalMs`.
    recovery: { maxAttempts: 0 },
    transportFactory: hosts.factory,
  };
  const group = await cleanup.adopt('close the group', HaGroup.open(config), (g) => {
    g.removeAllListeners(); // closing fails every member: not part of the story
    return g.close();
  });
  for (const name of names) log(`member host ${name}: pid ${hosts.pid(name)}`);

  const timeline = new Timeline(names);
  const promoted: string[] = [];
  const resynced = new Map<string, number>();
  const mark = (label: string, kind: Parameters<Timeline['mark']>[2]): void => timeline.mark(screen.now(), label, kind);
  group.on('memberFailed', (e) => {
    log(`event memberFailed: ${e.member} (${e.reason})`);
    mark(`${e.member} failed`, 'fault');
  });
  group.on('primaryChanged', (e) => log(`event primaryChanged: ${e.previous ?? 'none'} -> ${e.current ?? 'none'}`));
  group.on('standbyPromoted', (e) => {
    promoted.push(e.member);
    log(`event standbyPromoted: ${e.member} serves as an active member`);
    mark(`${e.member} promoted`, 'recovery');
  });
  group.on('standbyDemoted', (e) => {
    log(`event standbyDemoted: ${e.member} is a standby again`);
    mark(`${e.member} demoted`, 'recovery');
  });
  group.on('resyncProgress', (e) => {
    resynced.set(e.member, e.done);
    if (e.done > 0) log(`event resyncProgress: ${e.member} settled ${e.done}/${e.total} owed item(s)`);
  });
  group.on('memberRecovered', (e) => {
    log(`event memberRecovered: ${e.member} (attempt ${e.attempts})`);
    mark(`${e.member} recovered`, 'recovery');
  });
  group.on('recoveryFailed', (e) => log(`event recoveryFailed: ${e.member} attempt ${e.attempt} (${e.reason})`));

  const session = group.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);
  const living: DemoKey[] = [];
  const loadKeys = {
    aes: await makeKey(session, 'aes', 'demo-load-aes'),
    hmac: await makeKey(session, 'hmac', 'demo-load-hmac'),
    ec: await makeKey(session, 'ec', 'demo-load-ec'),
  };
  living.push(loadKeys.aes, loadKeys.hmac, loadKeys.ec);
  const doomed = [await makeKey(session, 'aes', 'demo-doomed-aes'), await makeKey(session, 'hmac', 'demo-doomed-hmac')];
  log(`keys made on ${group.primary} and replicated: AES-256, HMAC, EC P-256 for the load, 2 more to destroy later; held by ${group.describeObject(loadKeys.ec.handle)!.holders.join(', ')}`);

  const load = new MixedLoad(group, { aes: loadKeys.aes.handle, hmac: loadKeys.hmac.handle, ecPrivate: loadKeys.ec.handle, ecPublic: loadKeys.ec.publicKey! }, options.callers);
  const monitor = new Monitor(group, load, screen, timeline, hosts);
  cleanup.add('stop the load', async () => {
    monitor.stop();
    await load.stop();
  });
  const started = screen.now();
  monitor.phase = 'all members serve';
  await load.start();
  monitor.start();
  log(`mixed load: ${options.callers} callers, each on its own session: AES-GCM, HMAC, ECDSA, SHA-256, multi-part HMAC and AES-GCM, every result checked`);
  await pause(options.phaseSeconds);

  // 1. One member host killed: the primary, so that key management moves too.
  const victimPid = hosts.pid(first)!;
  monitor.phase = `${first} down, keys change`;
  log(`SIGKILL ${first}'s member host (pid ${victimPid})`);
  mark(`SIGKILL ${first}`, 'fault');
  process.kill(victimPid, 'SIGKILL');
  await waitFor(() => group.status().members[0]!.state.kind === 'failed', `${first} to fail`);
  const created = [await makeKey(session, 'aes', 'demo-new-aes'), await makeKey(session, 'hmac', 'demo-new-hmac'), await makeKey(session, 'ec', 'demo-new-ec')];
  living.push(...created);
  for (const key of doomed) await destroyKey(session, key);
  mark('3 keys made, 2 destroyed', 'keys');
  log(`while ${first} is down: made ${created.map((k) => k.label).join(', ')}; destroyed ${doomed.map((k) => k.label).join(', ')}; ${first} owes ${group.status().owed[first] ?? 0} item(s)`);
  await pause(options.phaseSeconds);

  // 2. The other actives stopped (frozen, as a hung HSM): the group fails each when its
  //    deadline passes, kills the hung host, and promotes the standby.
  monitor.phase = 'actives stopped, standby promoted';
  const frozen = [second, third].map((name) => ({ name, pid: hosts.pid(name)! }));
  log(`SIGSTOP ${frozen.map((f) => `${f.name}'s member host (pid ${f.pid})`).join(' and ')}: they hang`);
  mark(`SIGSTOP ${second}, ${third}`, 'fault');
  for (const f of frozen) process.kill(f.pid, 'SIGSTOP');
  await waitFor(() => promoted.includes(standby), `${standby} to be promoted`);
  const onStandby = await makeKey(session, 'hmac', 'demo-standby-hmac');
  living.push(onStandby);
  mark('1 key made on the standby', 'keys');
  log(`while only ${standby} serves: made ${onStandby.label}; owed: ${JSON.stringify(group.status().owed)}`);
  await pause(options.phaseSeconds);

  // 3. Everything recovered and resynchronised.
  monitor.phase = 'recovering';
  // In parallel, as the background loop would: each settles what it owes before it serves.
  const down = [first, second, third];
  log(`recover ${down.map((name) => `${name} (owes ${group.status().owed[name] ?? 0})`).join(', ')} ...`);
  mark('recover()', 'recovery');
  const back = await Promise.all(down.map((name) => group.recover(name)));
  const notRecovered = down.filter((_, i) => !back[i]);
  for (const name of down.filter((_, i) => back[i])) log(`${name} serves again, resynchronised; member host ${name}: pid ${hosts.pid(name)}`);
  log(`${created[2]!.label}, made while ${first} was down, is now held by ${group.describeObject(created[2]!.handle)?.holders.join(', ') ?? 'nobody'}`);
  monitor.phase = 'all members serve again';
  const stillOwed = Object.values(group.status().owed).reduce((a, b) => a + b, 0);
  await pause(options.phaseSeconds);

  await load.stop();
  monitor.stop();
  const seconds = screen.now() - started;
  await session.close();
  group.removeAllListeners();
  await group.close();

  // 4. The resync verified on each token alone.
  log('verifying every token alone: living keys present and working, destroyed keys gone ...');
  const destroyed = doomed.map((k) => k.label);
  const verdicts = await Promise.all(members.map((m) => verifyMember(m, living, destroyed, cleanup)));
  for (const v of verdicts) {
    log(
      v.problems.length === 0
        ? `verified ${v.member}: ${v.present} living keys present and working, ${v.gone} destroyed keys gone`
        : `NOT verified ${v.member}: ${v.problems.join('; ')}`,
    );
  }
  return {
    load,
    timeline,
    seconds,
    promoted,
    resynced,
    notRecovered,
    stillOwed,
    verdicts,
    keysCreatedWhileDown: [...created, onStandby].map((k) => k.label),
    keysDestroyedWhileDown: destroyed,
  };
}
