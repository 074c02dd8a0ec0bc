/**
 * What the application was told, kept by the chaos run: every key whose creation, change
 * or destruction the group acknowledged (or refused), and every failed operation with its
 * cause. The invariants (chaos/invariants.ts) compare the tokens with this at the end.
 */
import type { ObjectHandle } from '../src/index.js';

/** The kinds of key the load makes. */
export type KeyKind = 'aes' | 'hmac' | 'ec';

/**
 * Where a key stands in the application's view:
 * - `live`: created (acknowledged), not destroyed;
 * - `destroyed`: its destruction was acknowledged;
 * - `failedCreate`: its creation failed: no member may hold it;
 * - `uncertain`: a destruction failed: every member holds it, or none.
 */
export type KeyState = 'live' | 'destroyed' | 'failedCreate' | 'uncertain';

/** One key of the model, named by its CKA_ID (unique per run). */
export interface ModelKey {
  readonly id: string;
  readonly kind: KeyKind;
  state: KeyState;
  /** The label the last acknowledged change gave it. */
  label: string;
  /** Labels it may carry after a change that failed (its outcome is unknown): the old one and the new one. */
  labels: Set<string>;
  /** Virtual handles in the current group: the secret or private key, and the public key of a pair. */
  handle?: ObjectHandle;
  publicHandle?: ObjectHandle;
  /** Set while a worker uses or changes the key, so that nobody destroys it under them. */
  busy: number;
  /** When its creation and its destruction were acknowledged (ms from the start of the load), for reading a breach. */
  madeAtMs?: number;
  destroyedAtMs?: number;
  /** Set once the secret or private key is destroyed while the pair's public key is not yet: a retried destruction only destroys what is left. */
  mainDestroyed?: boolean;
  /** With CHAOS_DEBUG: what was done to it and when, to read a breach. */
  history?: string[];
  /** With CHAOS_DEBUG: the virtual handles it was made under, in the group of that index (the run restarts the group once). */
  madeIn?: { readonly group: number; readonly handles: readonly number[] };
}

/** Categories of operation, as counted and as failures are judged. */
export type OpCategory = 'stateless' | 'multipart' | 'keyManagement' | 'attributes' | 'session' | 'login';

/** One failed operation, with its cause. */
export interface Failure {
  /** Milliseconds from the start of the load. */
  readonly atMs: number;
  readonly category: OpCategory;
  /** What was done, e.g. `aes-gcm encrypt`, `generateKey aes`. */
  readonly op: string;
  /** The error's code (`ERR_*`), its CKR name when it has one, or `wrong-result`. */
  readonly code: string;
  readonly message: string;
  /** Members not serving (or stopped) when it failed. */
  readonly down: readonly string[];
  /**
   * A stateless or multi-part failure counts against the run unless no member holding
   * the key was alive (every member down); other categories are reported, not counted.
   */
  readonly counted: boolean;
}

/** The run's record: the key model, operation counts and failures. */
export class ChaosModel {
  readonly keys = new Map<string, ModelKey>();
  readonly operations: Record<OpCategory, number> = { stateless: 0, multipart: 0, keyManagement: 0, attributes: 0, session: 0, login: 0 };
  readonly failures: Failure[] = [];
  #nextId = 0;

  /** A fresh CKA_ID (hex) for a key of this run. */
  newId(prefix: string): string {
    return Buffer.from(`${prefix}-${(this.#nextId++).toString().padStart(6, '0')}`).toString('hex');
  }

  /** Adds a key in the given state. */
  add(id: string, kind: KeyKind, label: string, state: KeyState): ModelKey {
    const key: ModelKey = { id, kind, state, label, labels: new Set([label]), busy: 0 };
    this.keys.set(id, key);
    return key;
  }

  /** Keys in a state. */
  inState(state: KeyState): ModelKey[] {
    return [...this.keys.values()].filter((k) => k.state === state);
  }

  /** Counts one operation. */
  count(category: OpCategory): void {
    this.operations[category]++;
  }

  /** The number of operations over all categories. */
  get totalOperations(): number {
    return Object.values(this.operations).reduce((a, b) => a + b, 0);
  }

  /** Failures that count against the run. */
  get errors(): number {
    return this.failures.filter((f) => f.counted).length;
  }
}

/** The code of an error as the failure record shows it: `ERR_*` (with its CKR name when it has one). */
export function errorCode(error: unknown): string {
  const e = error as { code?: unknown; ckr?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : 'thrown';
  return typeof e?.ckr === 'string' ? `${code}/${e.ckr}` : code;
}

/** One line of an error (its message), never its arguments. */
export function errorMessage(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 300);
}
