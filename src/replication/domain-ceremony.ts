/**
 * The security domain ceremony (the CLI's `pkcs11-ha init`): gives every member the same
 * domain key, generated on one member when none has one, carried to the others wrapped
 * under a one-time transport key that the security officer marks trusted. The key is never
 * in plaintext outside a member.
 */
import type { Member } from '../member/member.js';
import type { Secret } from '../member/secret.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { carryDomainKey, createDomainKey, DomainError, readMemberDomain, type MemberDomain } from './domain-key.js';

/** What the domain ceremony did. */
export interface DomainInitResult {
  /** Check value of the domain key (the same on every member). */
  readonly checkValue: string;
  /** The member the key was made on or carried from. */
  readonly source: string;
  /** True when a new domain key was generated (no member had one). */
  readonly created: boolean;
  /** Members that received the key now. */
  readonly joined: readonly string[];
  /** Members that could not be reached and have no domain key yet. */
  readonly skipped: readonly string[];
}

/**
 * Gives every serving member the same domain key. Needs every serving member's SO PIN;
 * refuses when two members already hold different domain keys.
 *
 * @param soPinOf the member's security officer PIN, if configured
 * @throws {@link DomainError} on different domain keys, a missing SO PIN, or a refused SO login
 */
export async function initDomain(members: readonly Member[], soPinOf: (member: Member) => Secret | undefined): Promise<DomainInitResult> {
  const serving = members.filter((m) => m.serving);
  const skipped = members.filter((m) => !m.serving).map((m) => m.name);
  const missingPin = serving.filter((m) => soPinOf(m) === undefined).map((m) => m.name);
  if (missingPin.length > 0) throw new DomainError(`the domain ceremony needs the SO PIN (soPin) of: ${missingPin.join(', ')}`);
  const domains = await Promise.all(serving.map((m) => readMemberDomain(m)));
  const ambiguous = serving.filter((_, i) => domains[i]!.kind === 'ambiguous').map((m) => m.name);
  if (ambiguous.length > 0) throw new DomainError(`members hold more than one domain key: ${ambiguous.join(', ')}`);
  const values = new Set(domains.flatMap((d) => (d.kind === 'key' ? [d.checkValue] : [])));
  if (values.size > 1) {
    throw new DomainError(
      `members hold different domain keys (${serving.map((m, i) => `${m.name}: ${describeDomain(domains[i]!)}`).join(', ')}); ` +
        'refusing to choose: remove the wrong one by hand first',
    );
  }
  let sourceIndex = domains.findIndex((d) => d.kind === 'key');
  const created = sourceIndex < 0;
  if (created) sourceIndex = 0;
  if (!created && domains.every((d) => d.kind === 'key')) {
    // Nothing to do: no SO login (it would clash with a user logged in on these tokens).
    const d = domains[0] as Extract<MemberDomain, { kind: 'key' }>;
    return { checkValue: d.checkValue, source: serving[sourceIndex]!.name, created: false, joined: [], skipped };
  }
  // All or nothing: a refused SO login must not leave the other tokens logged in as SO.
  const logins = await Promise.allSettled(serving.map((m) => m.login(pkcs11js.CKU_SO, soPinOf(m)!.reveal())));
  const refused = logins.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (refused) {
    await Promise.allSettled(serving.map((m) => m.logout()));
    throw new DomainError(`the security officer could not log in on every member: ${(refused.reason as Error).message}`, { cause: refused.reason });
  }
  try {
    const source = serving[sourceIndex]!;
    const found = domains[sourceIndex]!;
    const sourceKey = found.kind === 'key' ? found.handle : await createDomainKey(source);
    const targets = serving.filter((_, i) => i !== sourceIndex && domains[i]!.kind === 'none');
    const carried = await Promise.allSettled(targets.map((t) => carryDomainKey(source, sourceKey, t)));
    const failed = carried.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const after = await Promise.all(serving.map((m) => readMemberDomain(m)));
    const checks = new Set(after.map(describeDomain));
    if (checks.size !== 1 || after[0]!.kind !== 'key') throw new DomainError(`the domain key did not come out the same everywhere: ${[...checks].join(', ')}`);
    return { checkValue: after[0]!.checkValue, source: source.name, created, joined: targets.map((t) => t.name), skipped };
  } finally {
    await Promise.allSettled(serving.map((m) => m.logout()));
  }
}

function describeDomain(d: MemberDomain): string {
  return d.kind === 'key' ? d.checkValue : d.kind === 'none' ? 'none' : `${d.count} keys`;
}
