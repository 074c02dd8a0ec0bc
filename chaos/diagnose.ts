/**
 * CHAOS_DEBUG's look at one key the group could not serve (`ERR_NO_MEMBER`): what the
 * load did to it, what the catalog says of it (name, linked holders, a change in
 * progress), what members owe for it, and what each member's token shows under its
 * CKA_ID. Read-only: it runs beside the load and changes nothing.
 */
import type { HaGroup } from '../src/index.js';
import { pkcs11js } from '../src/native/pkcs11js.js';
import { findOn } from '../src/replication/member-objects.js';
import { resyncMember } from '../src/replication/resync.js';
import { internalsOf } from '../src/testing.js';
import type { ModelKey } from './model.js';

/** Logs, line by line, what the group and the tokens hold of `key`. */
export async function diagnoseKey(group: HaGroup, key: ModelKey, log: (line: string) => void, trace?: GroupTrace): Promise<void> {
  const internals = internalsOf(group);
  const lines: string[] = [`diagnose ${Buffer.from(key.id, 'hex').toString()} (${key.kind}, handle ${key.handle}, model label ${key.label}):`];
  for (const h of key.history ?? []) lines.push(`  history ${h}`);
  for (const handle of [key.handle, key.publicHandle]) if (handle !== undefined) for (const t of trace?.(handle) ?? []) lines.push(`  trace ${handle}: ${t}`);
  for (const t of (trace?.(GLOBAL) ?? []).slice(-12)) lines.push(`  group: ${t}`);
  const object = key.handle === undefined ? undefined : internals.catalog.get(key.handle);
  if (object === undefined) lines.push('  catalog: no such object');
  else {
    const holders = [...object.holders.entries()].map(([i, h]) => `${internals.members[i]?.name}:${h.toString('hex')}`);
    lines.push(`  catalog: name ${object.identity.name}${object.identity.provisional ? ' (provisional)' : ''}, holders [${holders.join(', ')}], changing ${object.changing !== undefined}`);
  }
  for (const [member, debts] of internals.journal.entries()) {
    for (const d of debts) {
      if (d.object.handle === key.handle || d.object.name.includes(Buffer.from(key.id, 'hex').toString('hex'))) lines.push(`  owed by ${member}: ${d.kind}${'uncertain' in d && d.uncertain ? ' (uncertain)' : ''} ${d.object.name}`);
    }
  }
  for (const m of internals.members) {
    try {
      const found = await m.run<'findObjects'>((session) => ({ op: 'findObjects', session, template: [{ type: pkcs11js.CKA_ID, value: Buffer.from(key.id, 'hex') }] }));
      const labels: string[] = [];
      for (const handle of found) {
        const [label] = await m.run<'getAttributes'>((session) => ({ op: 'getAttributes', session, object: handle, types: [pkcs11js.CKA_LABEL] }));
        labels.push(`${handle.toString('hex')}=${label?.value?.toString() ?? '?'}`);
      }
      lines.push(`  ${m.name} (${m.state.kind}): [${labels.join(', ')}]`);
    } catch (error) {
      lines.push(`  ${m.name} (${m.state.kind}): ${(error as Error).message.split('\n')[0]}`);
    }
  }
  for (const line of lines) log(line);
}

/** The trace's key for what concerns every object (a logout, a member's links forgotten). */
const GLOBAL = 0;

/** Per virtual handle: the debts, settlements and holder links the group recorded for it ({@link GLOBAL}: for all). */
export type GroupTrace = (handle: number) => readonly string[];

/**
 * CHAOS_DEBUG: records, per virtual handle, what the journal and the catalog did to it (a
 * debt owed or settled, a holder linked or unlinked), by wrapping those methods of this
 * group's instances. Debug only: it costs a closure call per change.
 */
export function traceGroup(group: HaGroup, now: () => number): GroupTrace {
  const lines = new Map<number, string[]>();
  const note = (handle: number, what: string): void => {
    const list = lines.get(handle) ?? [];
    if (list.length < 80 || handle === GLOBAL) list.push(`${(now() / 1000).toFixed(3)} s ${what}`);
    lines.set(handle, list);
  };
  const { journal, catalog, members } = internalsOf(group);
  group.on('replicationOwed', (e) => note(e.object, `why ${e.member} owes: ${e.reason.split('\n')[0]!.slice(0, 160)}`));
  const name = (i: number): string => members[i]?.name ?? `#${i}`;
  const owe = journal.owe.bind(journal);
  journal.owe = (member, debt) => {
    note(debt.object.handle, `${member} owes ${debt.kind}${'uncertain' in debt && debt.uncertain ? ' (uncertain)' : ''} as ${debt.object.name}`);
    return owe(member, debt);
  };
  const settle = journal.settle.bind(journal);
  journal.settle = (member, debt) => {
    note(debt.object.handle, `${member} settles ${debt.kind}`);
    return settle(member, debt);
  };
  const link = catalog.link.bind(catalog);
  catalog.link = (object, member, handle) => {
    note(object.handle, `link ${name(member)}:${handle.toString('hex')}`);
    link(object, member, handle);
  };
  const unlink = catalog.unlink.bind(catalog);
  catalog.unlink = (object, member) => {
    if (object.holders.has(member)) note(object.handle, `unlink ${name(member)}`);
    unlink(object, member);
  };
  const forgetHolders = catalog.forgetHolders.bind(catalog);
  catalog.forgetHolders = () => {
    note(GLOBAL, 'every holder forgotten (logout)');
    forgetHolders();
  };
  const forgetMember = catalog.forgetMember.bind(catalog);
  catalog.forgetMember = (member) => {
    note(GLOBAL, `holders on ${name(member)} forgotten`);
    forgetMember(member);
  };
  const adopt = catalog.adopt.bind(catalog);
  catalog.adopt = (member, handle, identity) => {
    const adopted = adopt(member, handle, identity);
    note(adopted.object.handle, `adopt ${name(member)}:${handle.toString('hex')} as ${identity.name}`);
    return adopted;
  };
  return (handle) => lines.get(handle) ?? [];
}

/** CHAOS_DEBUG: why what is still owed at the end cannot be settled (a resync's reasons, and what the member shows under each debt's name). */
export async function explainOwed(group: HaGroup, log: (line: string) => void): Promise<void> {
  const { members, journal, domain, catalog } = internalsOf(group);
  for (const member of members) {
    if (journal.debts(member.name).length === 0 || !member.serving) continue;
    const domainKey = domain.keyOf(member);
    const result = await resyncMember({ member, journal, domainKey, catalog });
    for (const u of result.unsettled) {
      log(`still owed by ${member.name} (logged in ${member.loggedIn}): ${u.debt.kind} ${u.debt.object.name} fingerprint ${u.debt.object.fingerprint ?? 'none'}: ${u.reason}`);
      for (const f of await findOn(member, u.debt.object.search, domainKey).catch(() => [])) log(`  shows ${f.handle.toString('hex')}: ${f.identity.name} fingerprint ${f.identity.fingerprint ?? 'none'}`);
    }
  }
}
