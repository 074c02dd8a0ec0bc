/**
 * The mixed load: callers that each own a virtual session and run, in turn, single-part
 * (stateless) operations and multi-part ones, checking every result. A failed or wrong
 * operation is counted, never thrown: the demo's verdict reads the counts.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { HaGroup, ObjectHandle, VirtualSession } from '../../src/index.js';

/** The keys the load uses (made before it starts, so every member holds them). */
export interface LoadKeys {
  readonly aes: ObjectHandle;
  readonly hmac: ObjectHandle;
  readonly ecPrivate: ObjectHandle;
  readonly ecPublic: ObjectHandle;
}

/** The operations of the load, by name. */
export const OPERATIONS = ['AES-GCM', 'HMAC', 'ECDSA', 'SHA-256', 'HMAC multi-part', 'AES-GCM multi-part'] as const;

/** One operation of the load. */
export type OperationName = (typeof OPERATIONS)[number];

/** What one operation did. */
export interface OperationCount {
  ok: number;
  failed: number;
}

const PAYLOAD = randomBytes(1024);
const PAYLOAD_DIGEST = createHash('sha256').update(PAYLOAD).digest();

/** The load's callers and its counts. */
export class MixedLoad {
  readonly #group: HaGroup;
  readonly #keys: LoadKeys;
  readonly #callers: number;
  readonly #counts = new Map<OperationName, OperationCount>(OPERATIONS.map((name) => [name, { ok: 0, failed: 0 }]));
  /** The first few failures, for the report (never key material: messages only). */
  readonly failures: string[] = [];
  #running = false;
  #lanes: Promise<void>[] = [];
  #expectedMac: Buffer | undefined;

  constructor(group: HaGroup, keys: LoadKeys, callers: number) {
    this.#group = group;
    this.#keys = keys;
    this.#callers = callers;
  }

  /** Operations done, by name. */
  get counts(): ReadonlyMap<OperationName, Readonly<OperationCount>> {
    return this.#counts;
  }

  /** Operations that checked out. */
  get ok(): number {
    let sum = 0;
    for (const c of this.#counts.values()) sum += c.ok;
    return sum;
  }

  /** Operations that failed or gave a wrong result. */
  get failed(): number {
    let sum = 0;
    for (const c of this.#counts.values()) sum += c.failed;
    return sum;
  }

  /** Starts the callers (the group must be logged in). */
  async start(): Promise<void> {
    const probe = this.#group.slot.openSession();
    this.#expectedMac = await probe.sign('SHA256_HMAC', this.#keys.hmac, PAYLOAD);
    await probe.close();
    this.#running = true;
    this.#lanes = Array.from({ length: this.#callers }, (_, i) => this.#lane(i));
  }

  /** Stops the callers after their current operation. */
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#lanes);
  }

  async #lane(caller: number): Promise<void> {
    let session = this.#group.slot.openSession();
    try {
      for (let i = caller; this.#running; i++) {
        const name = OPERATIONS[i % OPERATIONS.length]!;
        const count = this.#counts.get(name)!;
        try {
          const wrong = await this.#run(name, session);
          if (wrong === undefined) count.ok++;
          else this.#fail(count, `${name}: ${wrong}`);
        } catch (error) {
          this.#fail(count, `${name}: ${(error as Error).message}`);
          // A multi-part operation that failed midway may still be active: a fresh session.
          await session.close().catch(() => undefined);
          session = this.#group.slot.openSession();
        }
      }
    } finally {
      await session.close().catch(() => undefined);
    }
  }

  #fail(count: OperationCount, message: string): void {
    count.failed++;
    if (this.failures.length < 10) this.failures.push(message);
  }

  /** @returns undefined when the result checks out, else what is wrong */
  async #run(name: OperationName, s: VirtualSession): Promise<string | undefined> {
    const k = this.#keys;
    switch (name) {
      case 'AES-GCM': {
        const iv = randomBytes(12);
        const ct = await s.encrypt({ name: 'AES_GCM', iv }, k.aes, PAYLOAD);
        const pt = await s.decrypt({ name: 'AES_GCM', iv }, k.aes, ct);
        return pt.equals(PAYLOAD) ? undefined : 'round trip mismatch';
      }
      case 'HMAC': {
        const mac = await s.sign('SHA256_HMAC', k.hmac, PAYLOAD);
        return mac.equals(this.#expectedMac!) ? undefined : 'another MAC';
      }
      case 'ECDSA': {
        const sig = await s.sign('ECDSA', k.ecPrivate, PAYLOAD_DIGEST);
        return (await s.verify('ECDSA', k.ecPublic, PAYLOAD_DIGEST, sig)) ? undefined : 'signature does not verify';
      }
      case 'SHA-256': {
        const digest = await s.digest('SHA256', PAYLOAD);
        return digest.equals(PAYLOAD_DIGEST) ? undefined : 'another digest';
      }
      case 'HMAC multi-part': {
        await s.signInit('SHA256_HMAC', k.hmac);
        for (let at = 0; at < PAYLOAD.length; at += 256) await s.signUpdate(PAYLOAD.subarray(at, at + 256));
        const mac = await s.signFinal();
        return mac.equals(this.#expectedMac!) ? undefined : 'another MAC';
      }
      case 'AES-GCM multi-part': {
        const iv = randomBytes(12);
        await s.encryptInit({ name: 'AES_GCM', iv }, k.aes);
        const parts: Buffer[] = [];
        for (let at = 0; at < PAYLOAD.length; at += 256) parts.push(await s.encryptUpdate(PAYLOAD.subarray(at, at + 256)));
        parts.push(await s.encryptFinal());
        const pt = await s.decrypt({ name: 'AES_GCM', iv }, k.aes, Buffer.concat(parts));
        return pt.equals(PAYLOAD) ? undefined : 'round trip mismatch';
      }
    }
  }
}
