/**
 * The chaos run's invariants, checked at the end against the tokens themselves: each
 * member's token is opened directly with pkcs11js (the group closed), its objects listed
 * and every key the application was told exists run there (`probeTokens`). The checks
 * proper (`checkInvariants`) are pure functions of those facts and the run's model, so a
 * planted breach can be tested without a process (test/chaos/invariants.test.ts).
 */
import { pkcs11js } from '../src/native/pkcs11js.js';
import { acquireModule, releaseModule } from '../src/pkcs11/module-registry.js';
import { DOMAIN_KEY_LABEL } from '../src/replication/domain-key.js';
import type { TestbedToken } from '../src/testbed/softhsm-testbed.js';
import type { KeyKind, KeyState } from './model.js';

/** The invariants, in the order they are printed. */
export const INVARIANTS = [
  'noFailedOperations',
  'allKeysEverywhere',
  'noResurrection',
  'attributesAgree',
  'noStrayObjects',
  'nothingOwed',
  'journalRestart',
  'noLeftovers',
] as const;
/** An invariant's name (as in the result JSON). */
export type InvariantName = (typeof INVARIANTS)[number];
/** `held`, or `breached: <why>`. */
export type Verdict = string;

/** An object found on a token. */
export interface TokenObject {
  readonly class: 'secretKey' | 'privateKey' | 'publicKey' | 'other';
  readonly label: string;
  /** CKA_ID in hex. */
  readonly id: string;
}

/** What one member's token answered for one key of the model. */
export interface KeyProbe {
  /** AES: CBC-PAD encryption of a fixed block under a fixed IV; HMAC: the MAC of a fixed block (hex). Equal on every member. */
  readonly output?: string;
  /**
   * Cross-member use: AES, member 0's ciphertext decrypts here; HMAC, member 0's MAC
   * verifies here; EC, member 0's signature verifies with this member's public key and this
   * member's signature with member 0's.
   */
  readonly crossOk: boolean;
  /** Why the probe failed, when it did. */
  readonly error?: string;
}

/** One member's token at the end of the run. */
export interface TokenSnapshot {
  readonly member: string;
  readonly objects: readonly TokenObject[];
  /** By model key id (hex), for keys found there. */
  readonly probes: ReadonlyMap<string, KeyProbe>;
}

/** The model's view of a key, as the checks need it. */
export interface KeyFact {
  readonly id: string;
  readonly kind: KeyKind;
  readonly state: KeyState;
  readonly labels: ReadonlySet<string>;
  /** When its creation and destruction were acknowledged (ms into the load), when known. */
  readonly madeAtMs?: number;
  readonly destroyedAtMs?: number;
}

/** What the run observed besides the tokens. */
export interface RunFacts {
  readonly keys: readonly KeyFact[];
  readonly tokens: readonly TokenSnapshot[];
  /** Failed operations that count (stateless and multi-part with a holder alive, wrong results). */
  readonly errors: number;
  /** One line on the first counted failure, for the verdict. */
  readonly firstError?: string;
  /** `status().owed` after the group healed. */
  readonly owedAtEnd: Readonly<Record<string, number>>;
  /** Members not serving after the heal. */
  readonly notServingAtEnd: readonly string[];
  /** The restart from the journal, when the run made one. */
  readonly journalRestart?: {
    /** Items owed when the group was closed. */
    readonly owedBefore: number;
    /** Items still owed after the new group's login (which settles them). */
    readonly owedAfterLogin: number;
    /** Model keys (live) the new group could not find exactly once. */
    readonly missing: readonly string[];
    readonly error?: string;
  };
  /** Host processes still alive, fds opened and not closed, temporary files left. */
  readonly leftovers: { readonly processes: readonly number[]; readonly fds: readonly string[]; readonly tempFiles: readonly string[] };
}

const HELD = 'held';
const breach = (what: string, items: readonly string[]): Verdict => `breached: ${what}: ${items.slice(0, 5).join('; ')}${items.length > 5 ? ` (+${items.length - 5} more)` : ''}`;
const classesOf = (kind: KeyKind): TokenObject['class'][] => (kind === 'ec' ? ['privateKey', 'publicKey'] : ['secretKey']);

/** Checks every invariant against the facts. */
export function checkInvariants(facts: RunFacts): Record<InvariantName, Verdict> {
  const byId = new Map(facts.keys.map((k) => [k.id, k]));
  const count = (t: TokenSnapshot, id: string, cls: TokenObject['class']): number => t.objects.filter((o) => o.id === id && o.class === cls).length;

  const everywhere: string[] = [];
  for (const key of facts.keys.filter((k) => k.state === 'live' || k.state === 'uncertain')) {
    const present = facts.tokens.filter((t) => classesOf(key.kind).some((c) => count(t, key.id, c) > 0));
    if (key.state === 'uncertain' && present.length === 0) continue; // its destruction did happen, everywhere
    for (const t of facts.tokens) {
      for (const cls of classesOf(key.kind)) {
        const n = count(t, key.id, cls);
        if (n !== 1) everywhere.push(`${hexText(key.id)} (${cls}) ${n === 0 ? 'missing on' : `${n} times on`} ${t.member}`);
      }
      const probe = t.probes.get(key.id);
      if (probe !== undefined && !probe.crossOk) everywhere.push(`${hexText(key.id)} does not work across members on ${t.member}${probe.error ? ` (${probe.error})` : ''}`);
    }
    const outputs = new Set(facts.tokens.map((t) => t.probes.get(key.id)?.output).filter((o) => o !== undefined));
    if (outputs.size > 1) everywhere.push(`${hexText(key.id)} gives ${outputs.size} different outputs for the same input`);
  }

  const resurrected: string[] = [];
  for (const key of facts.keys.filter((k) => k.state === 'destroyed')) {
    const when = key.madeAtMs !== undefined && key.destroyedAtMs !== undefined ? ` (made at ${key.madeAtMs} ms, destroyed at ${key.destroyedAtMs} ms)` : '';
    for (const t of facts.tokens) {
      const there = t.objects.filter((o) => o.id === key.id);
      if (there.length > 0) resurrected.push(`${hexText(key.id)} on ${t.member} as ${there.map((o) => `${o.class} ${JSON.stringify(o.label)}`).join(', ')}${when}`);
    }
  }

  const disagree: string[] = [];
  for (const key of facts.keys.filter((k) => k.state === 'live')) {
    const labels = new Set(facts.tokens.flatMap((t) => t.objects.filter((o) => o.id === key.id).map((o) => o.label)));
    if (labels.size > 1) disagree.push(`${hexText(key.id)} labelled ${[...labels].join(' / ')} across members`);
    for (const l of labels) if (!key.labels.has(l)) disagree.push(`${hexText(key.id)} labelled ${l}, the application set ${[...key.labels].join(' or ')}`);
  }

  const strays: string[] = [];
  for (const t of facts.tokens) {
    for (const o of t.objects) {
      if (o.class === 'secretKey' && o.label === DOMAIN_KEY_LABEL) continue;
      const key = byId.get(o.id);
      if (key === undefined) strays.push(`${o.class} ${JSON.stringify(o.label)} (CKA_ID ${o.id === '' ? 'empty' : hexText(o.id)}) on ${t.member}: unknown to the application`);
      else if (key.state === 'failedCreate') strays.push(`${o.class} ${JSON.stringify(o.label)} on ${t.member}: its creation failed`);
    }
  }

  const owed = Object.entries(facts.owedAtEnd).filter(([, n]) => n > 0).map(([m, n]) => `${m} owes ${n}`);
  owed.push(...facts.notServingAtEnd.map((m) => `${m} does not serve`));

  const jr = facts.journalRestart;
  let journal: Verdict = 'not run (too short a run)';
  if (jr !== undefined) {
    const problems = [...(jr.error ? [jr.error] : []), ...(jr.owedAfterLogin > 0 ? [`${jr.owedAfterLogin} item(s) still owed after the login`] : []), ...jr.missing.map((id) => `${hexText(id)} not found once after the restart`)];
    journal = problems.length === 0 ? HELD : breach('the restart from the journal', problems);
  }

  const left = facts.leftovers;
  const leftovers = [...left.processes.map((p) => `process ${p} alive`), ...left.fds.map((f) => `fd ${f} open`), ...left.tempFiles.map((f) => `temporary file ${f}`)];

  return {
    noFailedOperations: facts.errors === 0 ? HELD : breach(`${facts.errors} failed operation(s)`, facts.firstError ? [facts.firstError] : []),
    allKeysEverywhere: everywhere.length === 0 ? HELD : breach('keys not on every member, or not the same', everywhere),
    noResurrection: resurrected.length === 0 ? HELD : breach('destroyed keys present', resurrected),
    attributesAgree: disagree.length === 0 ? HELD : breach('attributes disagree', disagree),
    noStrayObjects: strays.length === 0 ? HELD : breach('objects the group does not know', strays),
    nothingOwed: owed.length === 0 ? HELD : breach('owed at the end', owed),
    journalRestart: journal,
    noLeftovers: leftovers.length === 0 ? HELD : breach('left behind', leftovers),
  };
}

/** A CKA_ID made of text shows as text. */
function hexText(id: string): string {
  const text = Buffer.from(id, 'hex').toString();
  return /^[\x20-\x7e]+$/.test(text) ? text : id;
}

const FIXED_IV = Buffer.alloc(16, 7);
const FIXED_DATA = Buffer.from('pkcs11-ha chaos: the same bytes on every member, 48 of them.').subarray(0, 48);
const FIXED_DIGEST = Buffer.alloc(32, 0x5a);

interface Open {
  readonly member: string;
  readonly p: import('pkcs11js').PKCS11;
  readonly session: Buffer;
  readonly release: () => void;
}

function attr(p: Open['p'], session: Buffer, handle: Buffer, type: number): Buffer {
  return (p.C_GetAttributeValue(session, handle, [{ type }])[0]?.value as Buffer | undefined) ?? Buffer.alloc(0);
}

function listObjects(o: Open): { object: TokenObject; handle: Buffer }[] {
  const { p, session } = o;
  p.C_FindObjectsInit(session, []);
  const handles: Buffer[] = [];
  for (let batch = p.C_FindObjects(session, 256); batch.length > 0; batch = p.C_FindObjects(session, 256)) handles.push(...batch);
  p.C_FindObjectsFinal(session);
  return handles.map((handle) => {
    const cls = attr(p, session, handle, pkcs11js.CKA_CLASS).readUIntLE(0, 4);
    const name = cls === pkcs11js.CKO_SECRET_KEY ? 'secretKey' : cls === pkcs11js.CKO_PRIVATE_KEY ? 'privateKey' : cls === pkcs11js.CKO_PUBLIC_KEY ? 'publicKey' : 'other';
    return { object: { class: name, label: attr(p, session, handle, pkcs11js.CKA_LABEL).toString(), id: attr(p, session, handle, pkcs11js.CKA_ID).toString('hex') }, handle };
  });
}

/**
 * Opens every token directly (the group must be closed), lists its objects, and runs each
 * live or uncertain model key there: see {@link KeyProbe}.
 */
export function probeTokens(tokens: readonly TestbedToken[], keys: readonly KeyFact[]): TokenSnapshot[] {
  const opened: Open[] = [];
  try {
    for (const token of tokens) {
      const module = acquireModule(token.modulePath, token.env, `token ${token.label}`);
      const p = module.pkcs11;
      const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === token.label);
      if (slot === undefined) {
        releaseModule(module);
        throw new Error(`token ${token.label} not found`);
      }
      const session = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      opened.push({ member: token.label, p, session, release: () => releaseModule(module) });
      p.C_Login(session, pkcs11js.CKU_USER, token.userPin);
    }
    const listed = opened.map(listObjects);
    const handleOf = (m: number, id: string, cls: TokenObject['class']): Buffer | undefined => listed[m]!.find((e) => e.object.id === id && e.object.class === cls)?.handle;
    const probes = opened.map(() => new Map<string, KeyProbe>());
    for (const key of keys.filter((k) => k.state === 'live' || k.state === 'uncertain')) {
      const outputs = opened.map((o, m) => {
        try {
          return produce(o, key.kind, handleOf(m, key.id, key.kind === 'ec' ? 'privateKey' : 'secretKey'));
        } catch (error) {
          return error as Error;
        }
      });
      const reference = outputs[0];
      opened.forEach((o, m) => {
        const own = outputs[m];
        if (own === undefined) return; // not on this member: the presence check says so
        if (own instanceof Error || reference === undefined || reference instanceof Error) {
          probes[m]!.set(key.id, { crossOk: false, error: own instanceof Error ? own.message : 'no usable copy on the first member' });
          return;
        }
        try {
          const crossOk = cross(o, opened[0]!, key.kind, handleOf(m, key.id, key.kind === 'ec' ? 'publicKey' : 'secretKey'), handleOf(0, key.id, key.kind === 'ec' ? 'publicKey' : 'secretKey'), reference, own);
          probes[m]!.set(key.id, { ...(key.kind === 'ec' ? {} : { output: own.toString('hex') }), crossOk });
        } catch (error) {
          probes[m]!.set(key.id, { crossOk: false, error: (error as Error).message });
        }
      });
    }
    return opened.map((o, m) => ({ member: o.member, objects: listed[m]!.map((e) => e.object), probes: probes[m]! }));
  } finally {
    for (const o of opened) {
      try {
        o.p.C_Logout(o.session);
      } catch {
        // not logged in
      }
      o.p.C_CloseSession(o.session);
      o.release();
    }
  }
}

/** A key's own output on a member: AES ciphertext, HMAC, or ECDSA signature of the fixed input. */
function produce(o: Open, kind: KeyKind, handle: Buffer | undefined): Buffer | undefined {
  if (handle === undefined) return undefined;
  const { p, session } = o;
  switch (kind) {
    case 'aes':
      p.C_EncryptInit(session, { mechanism: pkcs11js.CKM_AES_CBC_PAD, parameter: FIXED_IV }, handle);
      return Buffer.from(p.C_Encrypt(session, FIXED_DATA, Buffer.alloc(FIXED_DATA.length + 16)));
    case 'hmac':
      p.C_SignInit(session, { mechanism: pkcs11js.CKM_SHA256_HMAC }, handle);
      return Buffer.from(p.C_Sign(session, FIXED_DATA, Buffer.alloc(32)));
    case 'ec':
      p.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, handle);
      return Buffer.from(p.C_Sign(session, FIXED_DIGEST, Buffer.alloc(64)));
  }
}

/** Whether member `o` and the first member can use each other's output (see {@link KeyProbe.crossOk}). */
function cross(o: Open, first: Open, kind: KeyKind, own: Buffer | undefined, firsts: Buffer | undefined, reference: Buffer, mine: Buffer): boolean {
  if (own === undefined || firsts === undefined) return false;
  const { p, session } = o;
  switch (kind) {
    case 'aes': {
      p.C_DecryptInit(session, { mechanism: pkcs11js.CKM_AES_CBC_PAD, parameter: FIXED_IV }, own);
      return Buffer.from(p.C_Decrypt(session, reference, Buffer.alloc(reference.length))).equals(FIXED_DATA);
    }
    case 'hmac':
      p.C_VerifyInit(session, { mechanism: pkcs11js.CKM_SHA256_HMAC }, own);
      return p.C_Verify(session, FIXED_DATA, reference);
    case 'ec': {
      p.C_VerifyInit(session, { mechanism: pkcs11js.CKM_ECDSA }, own);
      const firstsVerifiesHere = p.C_Verify(session, FIXED_DIGEST, reference);
      first.p.C_VerifyInit(first.session, { mechanism: pkcs11js.CKM_ECDSA }, firsts);
      return firstsVerifiesHere && first.p.C_Verify(first.session, FIXED_DIGEST, mine);
    }
  }
}
