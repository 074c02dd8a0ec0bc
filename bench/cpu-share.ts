/**
 * Where the machine's CPU went during a measurement: this process, a set of child
 * processes (member hosts), and the machine's idle time, from /proc (Linux). Used where a
 * figure may be bound by this machine's 2 cores rather than by what it measures
 * (emulated/members16: 16 member hosts and the client share them).
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

/** CPU shares over one measurement, in cores (1 = one core busy the whole time). */
export interface CpuShare {
  readonly client: number;
  readonly hosts: number;
  /** Idle cores of the whole machine (other processes count as busy). */
  readonly idle: number;
  readonly cores: number;
}

const TICKS_PER_S = 100; // USER_HZ on Linux

/** utime + stime of a process, in seconds; 0 when it is gone or /proc is missing. */
function processSeconds(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
  } catch {
    return 0;
  }
}

/** Idle seconds of the whole machine (idle + iowait over every core). */
function idleSeconds(): number {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
    return (Number(cpu[4]) + Number(cpu[5])) / TICKS_PER_S;
  } catch {
    return Number.NaN;
  }
}

/** Runs `work` and says how the CPU was shared meanwhile (see {@link CpuShare}). */
export async function cpuDuring<T>(hostPids: readonly number[], work: () => Promise<T>): Promise<{ result: T; share: CpuShare }> {
  const t0 = performance.now();
  const client0 = process.cpuUsage();
  const hosts0 = hostPids.reduce((a, pid) => a + processSeconds(pid), 0);
  const idle0 = idleSeconds();
  const result = await work();
  const seconds = (performance.now() - t0) / 1000;
  const client = process.cpuUsage(client0);
  const hosts = hostPids.reduce((a, pid) => a + processSeconds(pid), 0) - hosts0;
  return {
    result,
    share: {
      client: (client.user + client.system) / 1e6 / seconds,
      hosts: hosts / seconds,
      idle: (idleSeconds() - idle0) / seconds,
      cores: cpus().length,
    },
  };
}

/** One line: `client 0.62, hosts 0.91, idle 0.31 of 2 cores`. */
export function describeShare(s: CpuShare): string {
  return `client ${s.client.toFixed(2)}, hosts ${s.hosts.toFixed(2)}, idle ${s.idle.toFixed(2)} of ${s.cores} cores`;
}
