/**
 * The chaos run's mixed load: workers that each own a virtual session and a few keys and
 * loop over stateless operations (checked: decrypt(encrypt(x)) = x, signatures verify,
 * two MACs of the same data agree), multi-part operations (replayable ones: AES-CBC-PAD,
 * HMAC, SHA-256, checked against the single-part answer), key generation and destruction,
 * label changes, attribute reads and session close/open. Login state is group-wide in
 * PKCS#11, so logout/login runs while the workers are paused at a barrier (as an
 * application logs out when it is idle): never under their feet.
 *
 * A worker never shares its own keys, so nothing it does is refused because of another
 * worker; the three shared keys are never destroyed.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { HaGroup, ObjectHandle, VirtualSession } from '../src/index.js';
import { seededRandom } from '../src/testing.js';
import { errorCode, errorMessage, type ChaosModel, type KeyKind, type ModelKey, type OpCategory } from './model.js';

/** What the load needs from the run. */
export interface LoadOptions {
  readonly model: ChaosModel;
  /** The group now (it changes when the run restarts it from its journal). */
  readonly group: () => HaGroup;
  /** Members not serving or stopped now, for the failure record. */
  readonly down: () => string[];
  /** Every member down or stopped now: a stateless failure is then not counted. */
  readonly allDown: () => boolean;
  /** Milliseconds since the run started. */
  readonly now: () => number;
  readonly seed: number;
  readonly workers: number;
  /** The shared keys (live in the model): never destroyed. */
  readonly shared: readonly ModelKey[];
  /** With CHAOS_DEBUG: called once per key on its first `ERR_NO_MEMBER`, to log what the group and the tokens hold of it. */
  readonly diagnose?: (key: ModelKey) => void;
  /** With CHAOS_DEBUG: which group (0 before the restart from the journal, 1 after) serves now. */
  readonly groupIndex?: () => number;
}

const OWN_KEYS_MAX = 6;
const OWN_KEYS_MIN = 2;

/** Workers running the mixed load; `pause()` brings them all to a barrier. */
export class Load {
  readonly #o: LoadOptions;
  readonly #random: () => number;
  readonly #workers: Promise<void>[] = [];
  readonly #own: ModelKey[][] = [];
  readonly #sessions: (VirtualSession | undefined)[] = [];
  #stopped = false;
  #gate: Promise<void> | undefined;
  #openGate: (() => void) | undefined;
  #busy = 0;
  #idleWaiters: (() => void)[] = [];
  readonly #diagnosed = new WeakSet<ModelKey>();

  constructor(options: LoadOptions) {
    this.#o = options;
    this.#random = seededRandom(options.seed ^ 0x5eed);
  }

  /** Starts the workers. */
  start(): void {
    for (let w = 0; w < this.#o.workers; w++) {
      this.#own.push([]);
      this.#sessions.push(undefined);
      this.#workers.push(this.#loop(w));
    }
  }

  /** Waits until no worker is inside an action, and holds them there until `resume()`. */
  async pause(): Promise<void> {
    if (this.#gate === undefined) this.#gate = new Promise((resolve) => (this.#openGate = resolve));
    if (this.#busy > 0) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Lets paused workers go on. `reopen` drops their sessions (the group was replaced). */
  resume(reopen = false): void {
    if (reopen) this.#sessions.fill(undefined);
    const open = this.#openGate;
    this.#gate = undefined;
    this.#openGate = undefined;
    open?.();
  }

  /** Stops the workers after their current action and closes their sessions. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.resume();
    await Promise.all(this.#workers);
    await Promise.allSettled(this.#sessions.map((s) => s?.close()));
    this.#sessions.fill(undefined);
  }

  async #loop(w: number): Promise<void> {
    while (!this.#stopped) {
      if (this.#gate !== undefined) {
        await this.#gate;
        continue;
      }
      this.#busy++;
      try {
        await this.#action(w);
      } finally {
        this.#busy--;
        if (this.#busy === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve();
      }
    }
  }

  /** With CHAOS_DEBUG, one line of the key's history. */
  #note(key: ModelKey, what: string): void {
    if (this.#o.diagnose !== undefined) (key.history ??= []).push(`${(this.#o.now() / 1000).toFixed(3)} s ${what}`);
  }

  #session(w: number): VirtualSession {
    return (this.#sessions[w] ??= this.#o.group().slot.openSession());
  }

  #pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.#random() * items.length)]!;
  }

  /** Runs `work`, counting it; a failure is recorded with its cause. */
  async #try(category: OpCategory, op: string, work: () => Promise<void>, key?: ModelKey): Promise<boolean> {
    this.#o.model.count(category);
    if (key) key.busy++;
    try {
      await work();
      return true;
    } catch (error) {
      const stateless = category === 'stateless' || category === 'multipart';
      if (key !== undefined && this.#o.diagnose !== undefined) {
        this.#note(key, `${op} failed: ${errorCode(error)}`);
        if (errorCode(error).startsWith('ERR_NO_MEMBER') && !this.#diagnosed.has(key)) {
          this.#diagnosed.add(key);
          this.#o.diagnose(key);
        }
      }
      this.#o.model.failures.push({
        atMs: Math.round(this.#o.now()),
        category,
        op,
        code: error instanceof WrongResult ? 'wrong-result' : errorCode(error),
        message: errorMessage(error),
        down: this.#o.down(),
        counted: error instanceof WrongResult || (stateless && !this.#o.allDown()),
      });
      return false;
    } finally {
      if (key) key.busy--;
    }
  }

  async #action(w: number): Promise<void> {
    const r = this.#random();
    const own = this.#own[w]!;
    const usable = [...this.#o.shared, ...own.filter((k) => k.state === 'live')];
    // Mostly cryptography, as an application's traffic is; key management a few percent.
    if (r < 0.6) return this.#stateless(w, this.#pick(usable));
    if (r < 0.8) return this.#multipart(w, this.#pick(usable));
    if (r < 0.84 && own.length < OWN_KEYS_MAX) return this.#generate(w, this.#pick<KeyKind>(['aes', 'hmac', 'ec']));
    if (r < 0.87 && own.length > OWN_KEYS_MIN) return this.#destroy(w, own);
    if (r < 0.9 && own.length > 0) return this.#relabel(w, this.#pick(own));
    if (r < 0.96) return this.#readAttributes(w, this.#pick(usable));
    await this.#try('session', 'close and open a session', async () => {
      const s = this.#sessions[w];
      this.#sessions[w] = undefined;
      await s?.close();
      this.#session(w);
    });
  }

  async #stateless(w: number, key: ModelKey): Promise<void> {
    const s = this.#session(w);
    const data = randomBytes(1 + Math.floor(this.#random() * 2048));
    const h = key.handle!;
    switch (key.kind) {
      case 'aes':
        await this.#try('stateless', 'aes-gcm encrypt/decrypt', async () => {
          const iv = randomBytes(12);
          const sealed = await s.encrypt({ name: 'AES_GCM', iv }, h, data);
          const opened = await s.decrypt({ name: 'AES_GCM', iv }, h, sealed);
          if (!opened.equals(data)) throw new WrongResult('AES-GCM decrypt gave other bytes');
        }, key);
        break;
      case 'hmac':
        await this.#try('stateless', 'hmac sign/verify', async () => {
          const a = await s.sign('SHA256_HMAC', h, data);
          const b = await s.sign('SHA256_HMAC', h, data);
          if (!a.equals(b)) throw new WrongResult('two HMACs of the same data differ');
          if (!(await s.verify('SHA256_HMAC', h, data, a))) throw new WrongResult('HMAC did not verify');
        }, key);
        break;
      case 'ec':
        await this.#try('stateless', 'ecdsa sign/verify', async () => {
          const digest = createHash('sha256').update(data).digest();
          const sig = await s.sign('ECDSA', h, digest);
          if (!(await s.verify('ECDSA', key.publicHandle!, digest, sig))) throw new WrongResult('ECDSA signature did not verify');
        }, key);
        break;
    }
    if (this.#random() < 0.2) {
      await this.#try('stateless', 'digest and random', async () => {
        const d = await s.digest('SHA256', data);
        if (!d.equals(createHash('sha256').update(data).digest())) throw new WrongResult('SHA-256 digest differs from node:crypto');
        if ((await s.generateRandom(32)).length !== 32) throw new WrongResult('generateRandom gave another length');
      });
    }
  }

  async #multipart(w: number, key: ModelKey): Promise<void> {
    const s = this.#session(w);
    const parts = Array.from({ length: 1 + Math.floor(this.#random() * 4) }, () => randomBytes(Math.floor(this.#random() * 16_384)));
    const whole = Buffer.concat(parts);
    const h = key.handle!;
    if (key.kind === 'aes') {
      await this.#try('multipart', 'aes-cbc-pad encrypt multi-part', async () => {
        const iv = randomBytes(16);
        await s.encryptInit({ name: 'AES_CBC_PAD', iv }, h);
        const out: Buffer[] = [];
        for (const p of parts) out.push(await s.encryptUpdate(p));
        out.push(await s.encryptFinal());
        const plain = await s.decrypt({ name: 'AES_CBC_PAD', iv }, h, Buffer.concat(out));
        if (!plain.equals(whole)) throw new WrongResult('multi-part AES-CBC-PAD did not decrypt to its input');
      }, key);
    } else if (key.kind === 'hmac') {
      await this.#try('multipart', 'hmac sign multi-part', async () => {
        await s.signInit('SHA256_HMAC', h);
        for (const p of parts) await s.signUpdate(p);
        const mac = await s.signFinal();
        if (!mac.equals(await s.sign('SHA256_HMAC', h, whole))) throw new WrongResult('multi-part HMAC differs from single-part');
      }, key);
    } else {
      // SoftHSM has no multi-part ECDSA: a multi-part digest, then a single-part signature.
      await this.#try('multipart', 'sha256 digest multi-part + ecdsa', async () => {
        await s.digestInit('SHA256');
        for (const p of parts) await s.digestUpdate(p);
        const digest = await s.digestFinal();
        if (!digest.equals(createHash('sha256').update(whole).digest())) throw new WrongResult('multi-part SHA-256 differs from node:crypto');
        const sig = await s.sign('ECDSA', h, digest);
        if (!(await s.verify('ECDSA', key.publicHandle!, digest, sig))) throw new WrongResult('ECDSA signature did not verify');
      }, key);
    }
  }

  async #generate(w: number, kind: KeyKind): Promise<void> {
    const s = this.#session(w);
    const model = this.#o.model;
    const id = model.newId(`w${w}`);
    const label = `chaos-${Buffer.from(id, 'hex').toString()}-v0`;
    const idBytes = Buffer.from(id, 'hex');
    let made: { handle: ObjectHandle; publicHandle?: ObjectHandle } | undefined;
    const ok = await this.#try('keyManagement', `generate ${kind}`, async () => {
      made = await generateModelKey(s, kind, label, idBytes);
    });
    const key = model.add(id, kind, label, ok ? 'live' : 'failedCreate');
    key.madeAtMs = Math.round(this.#o.now());
    this.#note(key, `generate ${ok ? `ok, handle ${made?.handle}${made?.publicHandle === undefined ? '' : `, public ${made.publicHandle}`}` : 'failed'}`);
    if (made !== undefined && this.#o.diagnose !== undefined) key.madeIn = { group: this.#o.groupIndex?.() ?? 0, handles: [made.handle, ...(made.publicHandle === undefined ? [] : [made.publicHandle])] };
    if (made) {
      key.handle = made.handle;
      if (made.publicHandle !== undefined) key.publicHandle = made.publicHandle;
      this.#own[w]!.push(key);
    }
  }

  async #destroy(w: number, own: ModelKey[]): Promise<void> {
    // A destruction that failed is tried again first: its outcome is unknown until one succeeds.
    const key = own.find((k) => k.state === 'uncertain') ?? own.find((k) => k.state === 'live' && k.busy === 0);
    if (key === undefined) return;
    const s = this.#session(w);
    const ok = await this.#try('keyManagement', `destroy ${key.kind}`, async () => {
      if (!key.mainDestroyed) await s.destroyObject(key.handle!);
      key.mainDestroyed = true;
      if (key.publicHandle !== undefined) await s.destroyObject(key.publicHandle);
    });
    key.state = ok ? 'destroyed' : 'uncertain';
    this.#note(key, `destroy ${ok ? 'ok' : 'failed'}`);
    if (ok) key.destroyedAtMs = Math.round(this.#o.now());
    if (ok) own.splice(own.indexOf(key), 1);
  }

  async #relabel(w: number, key: ModelKey): Promise<void> {
    if (key.state !== 'live') return;
    const s = this.#session(w);
    const next = `${key.label.replace(/-v\d+$/, '')}-v${Number(/-v(\d+)$/.exec(key.label)?.[1] ?? 0) + 1}`;
    const ok = await this.#try('attributes', 'setAttributes label', async () => {
      await s.setAttributes(key.handle!, { label: next });
      if (key.publicHandle !== undefined) await s.setAttributes(key.publicHandle, { label: next });
    }, key);
    this.#note(key, `relabel to ${next} ${ok ? 'ok' : 'failed'}`);
    if (ok) {
      key.label = next;
      key.labels = new Set([next]);
    } else {
      key.labels.add(next);
    }
  }

  async #readAttributes(w: number, key: ModelKey): Promise<void> {
    const s = this.#session(w);
    await this.#try('attributes', 'getAttributes label', async () => {
      const got = await s.getAttributes(key.handle!, ['label']);
      if (key.labels.size === 1 && got.label !== key.label) throw new WrongResult(`label reads ${String(got.label)}, the last change set ${key.label}`);
    }, key);
  }
}

/** A result that is wrong (not an error the group gave): always counted. */
export class WrongResult extends Error {
  override readonly name = 'WrongResult';
}

/** Generates a token key of the model's kind through a session. */
export async function generateModelKey(s: VirtualSession, kind: KeyKind, label: string, id: Buffer): Promise<{ handle: ObjectHandle; publicHandle?: ObjectHandle }> {
  switch (kind) {
    case 'aes':
      return { handle: await s.generateKey('AES_KEY_GEN', { label, id, valueLen: 32, token: true, encrypt: true, decrypt: true }) };
    case 'hmac':
      return { handle: await s.generateKey('GENERIC_SECRET_KEY_GEN', { label, id, valueLen: 32, token: true, sign: true, verify: true }) };
    case 'ec': {
      const pair = await s.generateKeyPair('EC_KEY_PAIR_GEN', { label, id, curve: 'P-256', token: true, verify: true }, { label, id, token: true, sign: true });
      return { handle: pair.privateKey, publicHandle: pair.publicKey };
    }
  }
}

/**
 * Finds a model key's objects in a (new) group by their CKA_ID: the secret or private
 * key, and the public key of a pair.
 * @returns how many objects of each class were found (1 each when all is well)
 */
export async function resolveModelKey(s: VirtualSession, key: ModelKey): Promise<{ keys: number; publics: number }> {
  const id = Buffer.from(key.id, 'hex');
  const keys = await s.findObjects({ id, class: key.kind === 'ec' ? 'privateKey' : 'secretKey' });
  const publics = key.kind === 'ec' ? await s.findObjects({ id, class: 'publicKey' }) : [];
  delete key.handle;
  delete key.publicHandle;
  if (keys[0] !== undefined) key.handle = keys[0];
  if (publics[0] !== undefined) key.publicHandle = publics[0];
  return { keys: keys.length, publics: publics.length };
}
