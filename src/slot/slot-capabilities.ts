/**
 * What the virtual slot can do, as every serving member can: the mechanisms all of them
 * support (C_GetMechanismList intersected; for each, the key sizes that fit every member
 * and the flags they all have) and the token flags and limits that hold on each. Kept in
 * a cache refreshed when the serving members change: applications ask in loops, and the
 * answers of a member do not change while it serves.
 */
import { NoMemberAvailableError } from '../errors/ha-error.js';
import type { Member } from '../member/member.js';
import type { Membership } from '../member/membership.js';
import type { MechanismLimits, TokenLimitsRead } from '../pkcs11/commands.js';

export type { MechanismLimits } from '../pkcs11/commands.js';

/**
 * The token flags and limits that hold on every serving member. `-1`: a member does not
 * say (CK_UNAVAILABLE_INFORMATION); `0` for a session limit: no limit (CK_EFFECTIVELY_INFINITE).
 */
export interface TokenLimits {
  /**
   * CKF_* token flags: a capability (CKF_RNG, CKF_LOGIN_REQUIRED, CKF_USER_PIN_INITIALIZED, ...)
   * only when every member has it; a warning (CKF_WRITE_PROTECTED, CKF_USER_PIN_COUNT_LOW,
   * CKF_USER_PIN_LOCKED, CKF_SO_PIN_*, CKF_ERROR_STATE) when any member has it.
   */
  readonly flags: number;
  readonly maxSessionCount: number;
  readonly maxRwSessionCount: number;
  /** The longest PIN every member takes. */
  readonly maxPinLen: number;
  /** The shortest PIN every member takes. */
  readonly minPinLen: number;
  /** Memory that holds on every member (each key has a copy on each): the smallest. */
  readonly totalPublicMemory: number;
  readonly freePublicMemory: number;
  readonly totalPrivateMemory: number;
  readonly freePrivateMemory: number;
  /** Sessions open on the members now, summed (the group's own pooled sessions included), at the last refresh. */
  readonly memberSessions: number;
  readonly memberRwSessions: number;
  /** The members the answer stands for. */
  readonly members: readonly string[];
}

/** Token flags that warn: on the group when on any member. */
const WARNINGS =
  0x2 | // CKF_WRITE_PROTECTED
  0x10000 | // CKF_USER_PIN_COUNT_LOW
  0x20000 | // CKF_USER_PIN_FINAL_TRY
  0x40000 | // CKF_USER_PIN_LOCKED
  0x80000 | // CKF_USER_PIN_TO_BE_CHANGED
  0x100000 | // CKF_SO_PIN_COUNT_LOW
  0x200000 | // CKF_SO_PIN_FINAL_TRY
  0x400000 | // CKF_SO_PIN_LOCKED
  0x800000 | // CKF_SO_PIN_TO_BE_CHANGED
  0x1000000; // CKF_ERROR_STATE

interface Snapshot {
  readonly key: string;
  readonly mechanisms: ReadonlyMap<number, MechanismLimits>;
  readonly token: TokenLimits;
}

/** A limit that every member keeps: the smallest, -1 (unknown) when any member does not say. */
function smallest(values: readonly number[], zeroIsUnlimited = false): number {
  if (values.some((v) => v < 0)) return -1;
  const bounded = zeroIsUnlimited ? values.filter((v) => v !== 0) : values;
  if (bounded.length === 0) return 0;
  return Math.min(...bounded);
}

/** Combines the members' C_GetTokenInfo. */
export function combineTokenLimits(reads: readonly { readonly member: string; readonly token: TokenLimitsRead }[]): TokenLimits {
  const t = reads.map((r) => r.token);
  const all = t.reduce((f, x) => f & x.flags, ~0 >>> 0);
  const any = t.reduce((f, x) => f | x.flags, 0);
  const sum = (k: 'sessionCount' | 'rwSessionCount'): number => (t.some((x) => x[k] < 0) ? -1 : t.reduce((s, x) => s + x[k], 0));
  return {
    flags: ((all & ~WARNINGS) | (any & WARNINGS)) >>> 0,
    maxSessionCount: smallest(t.map((x) => x.maxSessionCount), true),
    maxRwSessionCount: smallest(t.map((x) => x.maxRwSessionCount), true),
    maxPinLen: smallest(t.map((x) => x.maxPinLen)),
    minPinLen: t.some((x) => x.minPinLen < 0) ? -1 : Math.max(0, ...t.map((x) => x.minPinLen)),
    totalPublicMemory: smallest(t.map((x) => x.totalPublicMemory)),
    freePublicMemory: smallest(t.map((x) => x.freePublicMemory)),
    totalPrivateMemory: smallest(t.map((x) => x.totalPrivateMemory)),
    freePrivateMemory: smallest(t.map((x) => x.freePrivateMemory)),
    memberSessions: sum('sessionCount'),
    memberRwSessions: sum('rwSessionCount'),
    members: reads.map((r) => r.member),
  };
}

/** Intersects the members' mechanisms: key sizes that fit every member, flags all of them have. */
export function combineMechanisms(perMember: readonly (readonly MechanismLimits[])[]): Map<number, MechanismLimits> {
  const out = new Map<number, MechanismLimits>();
  const [first, ...rest] = perMember;
  if (first === undefined) return out;
  const others = rest.map((list) => new Map(list.map((m) => [m.type, m])));
  for (const m of first) {
    const same = others.map((o) => o.get(m.type));
    if (same.some((x) => x === undefined)) continue;
    const all = [m, ...(same as MechanismLimits[])];
    out.set(m.type, {
      type: m.type,
      minKeySize: Math.max(...all.map((x) => x.minKeySize)),
      maxKeySize: Math.min(...all.map((x) => x.maxKeySize)),
      flags: all.reduce((f, x) => f & x.flags, ~0) >>> 0,
    });
  }
  return out;
}

/** The slot's capabilities over the serving members, cached per set of serving members. */
export class SlotCapabilities {
  readonly #membership: Membership;
  #snapshot: Snapshot | undefined;
  #pending: { readonly key: string; readonly work: Promise<Snapshot> } | undefined;

  constructor(membership: Membership) {
    this.#membership = membership;
  }

  /** The mechanisms every serving member supports. */
  async mechanisms(): Promise<ReadonlyMap<number, MechanismLimits>> {
    return (await this.#current()).mechanisms;
  }

  /** The token flags and limits that hold on every serving member. */
  async token(): Promise<TokenLimits> {
    return (await this.#current()).token;
  }

  /** Asks the members again at the next call (their PIN flags may have changed: a login failed, a PIN changed). */
  forget(): void {
    this.#snapshot = undefined;
  }

  async #current(): Promise<Snapshot> {
    const members = this.#membership.serving().sort((a, b) => a.index - b.index);
    const key = members.map((m) => m.index).join(',');
    if (this.#snapshot?.key === key) return this.#snapshot;
    if (this.#pending?.key !== key) {
      const work = this.#read(key, members);
      this.#pending = { key, work };
      void work.then(
        (s) => {
          if (this.#pending?.work === work) this.#pending = undefined;
          // Kept only while the members it stands for still serve.
          if (s.key === this.#membership.serving().map((m) => m.index).sort((a, b) => a - b).join(',')) this.#snapshot = s;
        },
        () => {
          if (this.#pending?.work === work) this.#pending = undefined;
        },
      );
    }
    return this.#pending.work;
  }

  async #read(key: string, members: readonly Member[]): Promise<Snapshot> {
    if (members.length === 0) throw new NoMemberAvailableError('no member serves: the slot cannot say what it supports');
    const reads = await Promise.all(
      members.map(async (m) => {
        const types = await m.run<'getMechanismList'>((session) => ({ op: 'getMechanismList', session }));
        const mechanisms = await m.run<'getMechanismInfo'>((session) => ({ op: 'getMechanismInfo', session, mechanisms: types }));
        const token = await m.run<'getTokenInfo'>((session) => ({ op: 'getTokenInfo', session }));
        return { member: m.name, mechanisms, token };
      }),
    );
    return { key, mechanisms: combineMechanisms(reads.map((r) => r.mechanisms)), token: combineTokenLimits(reads) };
  }
}
