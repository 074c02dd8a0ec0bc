/**
 * The group's view of its security domain: the domain key's check value, and each
 * member's handle of it. A member whose domain key differs from the group's (or that has
 * none while the group has one) is refused: it could merge different keys into one object.
 */
import type { Member } from '../member/member.js';
import type { Handle } from '../pkcs11/commands.js';
import { DomainError, isDomainKeyName, readMemberDomain, type MemberDomain } from './domain-key.js';

/** Each member's domain key, and the group's check value. */
export class GroupDomain {
  /** Member index -> that member's handle of the domain key. */
  readonly #keys = new Map<number, Handle>();
  #checkValue: string | undefined;

  /** Check value of the group's domain key, or undefined when the group has none. */
  get checkValue(): string | undefined {
    return this.#checkValue;
  }

  /** The member's handle of the domain key, if it holds the group's. */
  keyOf(member: Member): Handle | undefined {
    return this.#keys.get(member.index);
  }

  /** True for an object named like the domain key: the group never hands it to the application. */
  isDomainKey(label: Buffer | undefined, id: Buffer | undefined): boolean {
    return isDomainKeyName(label, id);
  }

  /**
   * Reads every serving member's domain key when the group opens and fails members whose
   * key differs from the group's, or that have none while the group has one. A group where
   * no member has a domain key opens too: stateless operations work, key replication refuses.
   */
  async check(members: readonly Member[]): Promise<void> {
    const serving = members.filter((m) => m.serving);
    const domains = await Promise.all(serving.map((m) => readMemberDomain(m).catch((error: unknown) => error as Error)));
    const reference = domains.find((d): d is Extract<MemberDomain, { kind: 'key' }> => !(d instanceof Error) && d.kind === 'key');
    this.#checkValue = reference?.checkValue;
    serving.forEach((m, i) => {
      const d = domains[i]!;
      if (d instanceof Error) {
        // A member fault already failed it; anything else leaves its domain unproven.
        if (reference !== undefined && m.serving) m.fail(`refused: its domain key could not be checked (${d.message})`, d);
        return;
      }
      if (d.kind === 'key' && d.checkValue === reference?.checkValue) {
        this.#keys.set(m.index, d.handle);
      } else if (reference !== undefined) {
        const why = refusal(d, reference.checkValue);
        m.fail(`refused: ${why}`, new DomainError(`member ${m.name} refused: ${why}`));
      }
    });
  }

  /**
   * Reads a reconnected member's domain key (its handle may have changed) and admits it.
   *
   * @throws {@link DomainError} when its key is not the group's: retrying will not help
   */
  async admit(member: Member): Promise<void> {
    const domain = await readMemberDomain(member);
    if (this.#checkValue !== undefined && (domain.kind !== 'key' || domain.checkValue !== this.#checkValue)) {
      throw new DomainError(`member ${member.name} refused: ${refusal(domain, this.#checkValue)}`);
    }
    if (domain.kind === 'key') this.#keys.set(member.index, domain.handle);
  }
}

function refusal(d: MemberDomain, groupCheckValue: string): string {
  if (d.kind === 'key') return `its domain key ${d.checkValue} differs from the group's ${groupCheckValue}`;
  return d.kind === 'none' ? 'it has no domain key' : `it holds ${d.count} domain keys`;
}
