/**
 * How the CLI shows a group's status: the health verdict behind the exit code, a table
 * for a person at a terminal, JSON for anything else.
 */
import type { GroupStatus, MemberStatus } from '../group/group-status.js';

/** The verdict on a status: healthy, or the problems that make it degraded. */
export interface Health {
  readonly healthy: boolean;
  /** One line per problem, e.g. `member-2 failed: connection lost`. */
  readonly problems: readonly string[];
}

/**
 * Healthy when some member serves and no member (removed ones aside) is failed,
 * refused, recovering or owing.
 */
export function health(status: GroupStatus): Health {
  const problems: string[] = [];
  const present = status.members.filter((m) => m.state.kind !== 'removed');
  for (const m of present) {
    if (m.state.kind === 'failed') problems.push(`${m.name} failed: ${m.state.reason}`);
    else if (m.state.kind === 'recovering') problems.push(`${m.name} is recovering (attempt ${m.state.attempt})`);
    if (m.owed > 0) problems.push(`${m.name} owes ${m.owed} item${m.owed === 1 ? '' : 's'}`);
  }
  if (!present.some((m) => m.state.kind === 'active' || m.state.kind === 'standby')) problems.push('no member serves');
  return { healthy: problems.length === 0, problems };
}

/** A one-line summary for `check`. */
export function summaryLine(status: GroupStatus): string {
  const verdict = health(status);
  const serving = status.members.filter((m) => m.state.kind === 'active' || m.state.kind === 'standby').length;
  const present = status.members.filter((m) => m.state.kind !== 'removed').length;
  const head = `${verdict.healthy ? 'healthy' : 'degraded'}: ${serving}/${present} members serve, primary ${status.primary ?? 'none'}`;
  return verdict.healthy ? head : `${head}; ${verdict.problems.join('; ')}`;
}

function stateText(m: MemberStatus): string {
  if (m.state.kind === 'standby' && m.state.promoted) return 'standby (promoted)';
  if (m.state.kind === 'recovering') return `recovering #${m.state.attempt}`;
  return m.state.kind;
}

/** `14:03:27` (UTC): when a member entered its state, short enough for a table cell. */
function clockTime(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

/** The status as a table, for a terminal. */
export function statusTable(status: GroupStatus): string {
  const head = ['MEMBER', 'ROLE', 'STATE', 'SINCE', 'PID', 'OUTSTANDING', 'SERVED', 'FAILURES', 'OWED', 'TOKEN'];
  const rows = status.members.map((m) => [
    m.name,
    m.role,
    stateText(m),
    m.changedAt === undefined ? '-' : clockTime(m.changedAt),
    m.pid === undefined ? '-' : String(m.pid),
    String(m.outstanding),
    String(m.served),
    String(m.failures),
    String(m.owed),
    m.token ? `${m.token.label} (${m.token.serial})` : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const verdict = health(status);
  return [
    `primary ${status.primary ?? 'none'} · scheduler ${status.scheduler} · logged in ${status.loggedIn ? 'yes' : 'no'} · objects ${status.objects} · domain ${status.domain ?? 'none'}`,
    '',
    line(head),
    ...rows.map(line),
    '',
    verdict.healthy ? 'healthy' : `degraded:\n${verdict.problems.map((p) => `  ${p}`).join('\n')}`,
    '',
  ].join('\n');
}

/** The status as JSON (buffers as hex); `pretty` for a single answer, one line for `--watch`. */
export function statusJson(status: GroupStatus, pretty: boolean): string {
  // A Buffer reaches the replacer already as { type: 'Buffer', data } (its toJSON).
  const hex = (_k: string, v: unknown) => (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data) ? Buffer.from((v as { data: number[] }).data).toString('hex') : v);
  return `${JSON.stringify(status, hex, pretty ? 2 : undefined)}\n`;
}
