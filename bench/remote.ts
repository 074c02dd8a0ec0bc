/**
 * remote/<op>/hosts2: the virtual slot over 2 REMOTE member hosts, `pkcs11-ha host --listen
 * 127.0.0.1:0` processes reached over mutual TLS 1.3 on loopback (members `{ url:
 * 'tls://127.0.0.1:<port>', tls: { ca, cert, key } }`), against the machine's limit
 * (bench/limit.ts: one independent process per core, each using pkcs11js directly with
 * sync calls on its own token, all at once), measured in the same run and interleaved. It
 * mirrors `limit/<op>/hosts2` (bench/limit-hosts.ts) with TLS in place of the Unix socket
 * and the host's own process in place of one the group spawns, so the two entries side by
 * side say what the TLS hop and a remote host's per-client bookkeeping cost. Target (issue
 * 17): 0.8 for RSA-2048 signatures.
 *
 * Load: 16 closed-loop callers, one virtual session each; every lane's output is checked
 * with Node's crypto before and after the timed runs. Only RSA-2048 is measured (as in
 * limit-hosts, for the quick run's time); add an op to {@link REMOTE_OPS} to measure it.
 */
import { join } from 'node:path';
import { HaGroup } from '../src/group/ha-group.js';
import { provisionKeys, standardKeys } from '../src/testbed/provision.js';
import { createTestbed } from '../src/testbed/softhsm-testbed.js';
import { makeCertificates } from '../src/testbed/tls-certificates.js';
import { groupVsLimitSeconds, measureGroupVsLimit, type GroupVsLimit } from './group-vs-limit.js';
import type { BenchContext, BenchFamily, BenchResult, ResultNote } from './harness.js';
import { openMachineLimit, type MachineLimit } from './limit.js';
import { opSpecs, type KeyedOpName } from './ops.js';
import { startCliHost, logHostTails, type BenchTlsHost } from './tls-hosts.js';

/** The ops measured over remote member hosts. */
export const REMOTE_OPS: readonly KeyedOpName[] = ['rsa2048-sign'];
/** Remote member hosts in the group. */
const HOSTS = 2;
const CALLERS = 16;
/** Fewest repetitions, whatever `--reps` says (both sides are several busy processes: see limit-hosts.ts). */
const MIN_REPS = 5;
/** Ratio targets (issue 17). */
export const REMOTE_TARGETS: Partial<Record<KeyedOpName, number>> = { 'rsa2048-sign': 0.8 };
/** Seconds of set-up (certificates, the limit's processes and tokens, 2 tokens and 2 hosts), for the progress plan. */
const SETUP_SECONDS = 8;

const idOf = (op: KeyedOpName): string => `remote/${op}/hosts${HOSTS}`;
const SPEC: GroupVsLimit = {
  members: HOSTS,
  callers: CALLERS,
  minReps: MIN_REPS,
  idOf,
  tag: `remote/hosts${HOSTS}`,
  family: 'remote',
  side: 'remote hosts',
  spreadName: 'remote',
  described: 'remote member hosts (mutual TLS 1.3 on loopback)',
  targets: REMOTE_TARGETS,
  extra: { transport: 'tls' },
};

/** The virtual slot over remote (TLS) member hosts against the machine's limit (see the file comment). */
export const remote: BenchFamily = {
  name: 'remote/',
  ids: () => REMOTE_OPS.map(idOf),

  plannedSeconds(ctx) {
    const ops = REMOTE_OPS.filter((op) => ctx.wants(idOf(op)));
    return groupVsLimitSeconds(SPEC, ctx, ops.length, SETUP_SECONDS);
  },

  async run(ctx: BenchContext) {
    const results: BenchResult[] = [];
    const notes: ResultNote[] = [];
    const ops = REMOTE_OPS.filter((op) => ctx.wants(idOf(op)));
    if (ops.length === 0) return { results, notes };
    ctx.log(`remote/hosts${HOSTS}: the virtual slot over ${HOSTS} pkcs11-ha host processes over mutual TLS on loopback, ${CALLERS} callers, against the machine's limit`);

    const bed = await createTestbed({ count: HOSTS, labelPrefix: 'remote' });
    const untrack = ctx.trackDir(bed.dir);
    let pool: MachineLimit | undefined;
    let group: HaGroup | undefined;
    const hosts: BenchTlsHost[] = [];
    try {
      const keys = standardKeys('remote');
      provisionKeys(bed.tokens, keys);
      const specs = opSpecs(keys);
      const certs = await makeCertificates(join(bed.dir, 'tls'), ['bench-app']);
      const app = certs.client('bench-app');
      // The limit's processes and the member hosts start at once; everything is closed whatever fails.
      const [limitOpened, ...started] = await Promise.allSettled([openMachineLimit({ log: ctx.log, trackDir: ctx.trackDir }), ...bed.tokens.map((t) => startCliHost(bed.dir, t, certs))]);
      if (limitOpened.status === 'fulfilled') pool = limitOpened.value;
      for (const s of started) if (s.status === 'fulfilled') hosts.push(s.value as BenchTlsHost);
      if (limitOpened.status === 'rejected') throw limitOpened.reason;
      for (const s of started) if (s.status === 'rejected') throw s.reason;
      const limit = limitOpened.value;
      group = await HaGroup.open({
        members: bed.tokens.map((t, i) => ({ name: t.label, url: hosts[i]!.url, tls: { ca: certs.ca, cert: app.cert, key: app.key }, userPin: t.userPin })),
      });
      const g = group;
      await measureGroupVsLimit(ctx, SPEC, { ops, specs, group: g, userPin: bed.tokens[0]!.userPin, limit, setupSeconds: SETUP_SECONDS }, results, notes);
    } catch (error) {
      logHostTails(hosts, ctx.log, 'remote');
      throw error;
    } finally {
      await Promise.allSettled([group?.close(), pool?.close()]);
      await Promise.allSettled(hosts.map((h) => h.close()));
      await bed.dispose();
      untrack();
    }
    return { results, notes };
  },
};
