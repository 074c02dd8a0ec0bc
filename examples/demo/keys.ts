/**
 * The demo's token keys, each made through the virtual slot together with evidence of
 * what it does (a MAC, a ciphertext, a signature computed at creation), so that any single
 * member can later prove it holds the same key: same MAC, same plaintext back, a signature
 * that verifies.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ObjectHandle, VirtualSession } from '../../src/index.js';

/** The kinds of key the demo makes. */
export type DemoKeyKind = 'aes' | 'hmac' | 'ec';

/** A key made through the group, with the evidence computed right after its creation. */
export interface DemoKey {
  readonly label: string;
  readonly kind: DemoKeyKind;
  /** The key (the private key of a pair); `publicKey` for a pair. */
  readonly handle: ObjectHandle;
  readonly publicKey?: ObjectHandle;
  /** Input of the evidence: plaintext (AES), data (HMAC), digest (EC). */
  readonly input: Buffer;
  /** AES-GCM IV of the evidence ciphertext. */
  readonly iv?: Buffer;
  /** Ciphertext (AES), MAC (HMAC) or signature (EC). */
  readonly output: Buffer;
}

/** Makes a token key through the group and computes its evidence. */
export async function makeKey(session: VirtualSession, kind: DemoKeyKind, label: string): Promise<DemoKey> {
  switch (kind) {
    case 'aes': {
      const handle = await session.generateKey('AES_KEY_GEN', { label, valueLen: 32, token: true, private: true, encrypt: true, decrypt: true });
      const input = randomBytes(64);
      const iv = randomBytes(12);
      return { label, kind, handle, input, iv, output: await session.encrypt({ name: 'AES_GCM', iv }, handle, input) };
    }
    case 'hmac': {
      const handle = await session.generateKey('GENERIC_SECRET_KEY_GEN', { label, valueLen: 32, token: true, private: true, sign: true, verify: true });
      const input = randomBytes(64);
      return { label, kind, handle, input, output: await session.sign('SHA256_HMAC', handle, input) };
    }
    case 'ec': {
      const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { label, curve: 'P-256', token: true, verify: true }, { label, token: true, private: true, sign: true });
      const input = createHash('sha256').update(randomBytes(64)).digest();
      return { label, kind, handle: pair.privateKey, publicKey: pair.publicKey, input, output: await session.sign('ECDSA', pair.privateKey, input) };
    }
  }
}

/** Destroys a key (both halves of a pair) through the group. */
export async function destroyKey(session: VirtualSession, key: DemoKey): Promise<void> {
  await session.destroyObject(key.handle);
  if (key.publicKey !== undefined) await session.destroyObject(key.publicKey);
}

/**
 * Checks, in a session of a group of ONE member, that this member holds `key` and that it
 * is the same key: the evidence checks out, and (EC) a fresh signature verifies.
 *
 * @returns undefined when it checks out, else what is wrong
 */
export async function checkKey(session: VirtualSession, key: DemoKey): Promise<string | undefined> {
  const found = await session.findObjects({ label: key.label, class: key.kind === 'ec' ? 'privateKey' : 'secretKey' });
  if (found.length !== 1) return `${key.label}: ${found.length} objects found, expected 1`;
  const handle = found[0]!;
  switch (key.kind) {
    case 'aes': {
      const plain = await session.decrypt({ name: 'AES_GCM', iv: key.iv! }, handle, key.output);
      return plain.equals(key.input) ? undefined : `${key.label}: decrypts to something else`;
    }
    case 'hmac': {
      const mac = await session.sign('SHA256_HMAC', handle, key.input);
      return mac.equals(key.output) ? undefined : `${key.label}: another MAC`;
    }
    case 'ec': {
      const [publicKey] = await session.findObjects({ label: key.label, class: 'publicKey' });
      if (publicKey === undefined) return `${key.label}: no public key`;
      if (!(await session.verify('ECDSA', publicKey, key.input, key.output))) return `${key.label}: the signature made at creation does not verify`;
      const fresh = await session.sign('ECDSA', handle, key.input);
      return (await session.verify('ECDSA', publicKey, key.input, fresh)) ? undefined : `${key.label}: a fresh signature does not verify`;
    }
  }
}

/** @returns undefined when the member holds no object labelled `label`, else what is wrong */
export async function checkGone(session: VirtualSession, label: string): Promise<string | undefined> {
  const found = await session.findObjects({ label });
  return found.length === 0 ? undefined : `${label}: still there (${found.length} object(s))`;
}
