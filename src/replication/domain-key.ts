/**
 * The group's security domain: one AES-256 key, the same on every member, trusted
 * (CKA_TRUSTED, set by the security officer) so that it may wrap keys marked
 * CKA_WRAP_WITH_TRUSTED. Replication wraps keys under it on one member and unwraps them
 * on the others: key material never leaves a member in plaintext.
 *
 * The domain key is a public (CKA_PRIVATE=false) object because a security officer
 * cannot create private objects, and only the SO may set CKA_TRUSTED. It is sensitive:
 * its value can never be read, only used.
 */
import { createHash } from 'node:crypto';
import { HaError } from '../errors/ha-error.js';
import type { Member } from '../member/member.js';
import type { Handle } from '../pkcs11/commands.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { toMechanism } from '../pkcs11/mechanism-table.js';
import { toRawTemplate, type Pkcs11Attribute } from '../pkcs11/template-codec.js';

/** Label of the domain key on every member. */
export const DOMAIN_KEY_LABEL = 'pkcs11-ha domain key';
/** CKA_ID of the domain key on every member. */
export const DOMAIN_KEY_ID = Buffer.from('pkcs11-ha/domain');

/** True for an object named like the domain key: the group never hands one to the application. */
export function isDomainKeyName(label: Buffer | undefined, id: Buffer | undefined): boolean {
  return label !== undefined && id !== undefined && label.toString() === DOMAIN_KEY_LABEL && id.equals(DOMAIN_KEY_ID);
}

/** Where a member stands with respect to the domain. */
export type MemberDomain =
  | { readonly kind: 'none' }
  | { readonly kind: 'key'; readonly handle: Handle; readonly checkValue: string }
  | { readonly kind: 'ambiguous'; readonly count: number };

/** Code `ERR_DOMAIN`: a problem with the security domain (missing, different on two members, SO PIN absent). */
export class DomainError extends HaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DOMAIN', message, options);
  }
}

/** Attributes of the domain key (without CKA_VALUE_LEN, which only key generation takes). */
function domainTemplate(): Pkcs11Attribute[] {
  return toRawTemplate({
    class: 'secretKey',
    keyType: 'aes',
    token: true,
    private: false,
    trusted: true,
    sensitive: true,
    extractable: true,
    wrapWithTrusted: true,
    wrap: true,
    unwrap: true,
    encrypt: false,
    decrypt: false,
    sign: false,
    verify: false,
    derive: false,
    // Nobody may remove or copy it. (CKA_MODIFIABLE=false would be right too, but SoftHSM
    // refuses it in an unwrap template; the group never hands the key to the application.)
    destroyable: false,
    copyable: false,
    label: DOMAIN_KEY_LABEL,
    id: DOMAIN_KEY_ID,
  });
}

const SEARCH = (): Pkcs11Attribute[] => toRawTemplate({ class: 'secretKey', label: DOMAIN_KEY_LABEL, id: DOMAIN_KEY_ID });

/**
 * A check value of the domain key computed inside the member (SHA-256 over the key by
 * C_DigestKey, first 8 bytes): equal on two members exactly when they hold the same key.
 * SoftHSM leaves CKA_CHECK_VALUE empty on unwrapped keys, so it cannot serve here.
 */
export async function domainCheckValue(member: Member, handle: Handle): Promise<string> {
  const digest = await member.run<'digestKey'>((session) => ({ op: 'digestKey', session, mechanism: toMechanism('SHA256'), key: handle }));
  return createHash('sha256').update(digest).digest('hex').slice(0, 16);
}

/** Finds the domain key on a member (public object: no login needed). */
export async function readMemberDomain(member: Member): Promise<MemberDomain> {
  const found = await member.run<'findObjects'>((session) => ({ op: 'findObjects', session, template: SEARCH() }));
  if (found.length === 0) return { kind: 'none' };
  if (found.length > 1) return { kind: 'ambiguous', count: found.length };
  const handle = found[0]!;
  return { kind: 'key', handle, checkValue: await domainCheckValue(member, handle) };
}

/** Generates a new domain key on a member. The member must be logged in as security officer. */
export async function createDomainKey(member: Member): Promise<Handle> {
  return member.run<'generateKey'>((session) => ({
    op: 'generateKey',
    session,
    mechanism: toMechanism('AES_KEY_GEN'),
    template: [...domainTemplate(), ...toRawTemplate({ valueLen: 32 })],
  }));
}

/**
 * Carries the domain key from `source` to `target` without it ever being in plaintext
 * outside a member: the target makes a one-time RSA-2048 transport key pair (session
 * objects); the SO marks its public half trusted on the source; the source wraps the
 * domain key under it (RSA-OAEP); the target unwraps. Both members must be logged in
 * as security officer. The transport keys are destroyed afterwards.
 */
export async function carryDomainKey(source: Member, sourceKey: Handle, target: Member): Promise<Handle> {
  const pair = await target.run<'generateKeyPair'>((session) => ({
    op: 'generateKeyPair',
    session,
    mechanism: toMechanism('RSA_PKCS_KEY_PAIR_GEN'),
    publicTemplate: toRawTemplate({ token: false, private: false, wrap: true, encrypt: true, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]) }),
    // Unwrap only: with C_Decrypt allowed, the OAEP blob could be opened into plaintext.
    privateTemplate: toRawTemplate({ token: false, private: false, unwrap: true, decrypt: false, sensitive: true, extractable: false }),
  }));
  let trustedOnSource: Handle | undefined;
  try {
    const [modulus, exponent] = await target.run<'getAttributes'>((session) => ({
      op: 'getAttributes',
      session,
      object: pair.publicKey,
      types: [pkcs11js.CKA_MODULUS, pkcs11js.CKA_PUBLIC_EXPONENT],
    }));
    if (modulus?.value === undefined || exponent?.value === undefined) throw new DomainError(`member ${target.name} did not show its transport public key`);
    const created = await source.run<'createObject'>((session) => ({
      op: 'createObject',
      session,
      template: [
        ...toRawTemplate({ class: 'publicKey', keyType: 'rsa', token: false, private: false, trusted: true, wrap: true, encrypt: true }),
        { type: pkcs11js.CKA_MODULUS, value: modulus.value },
        { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: exponent.value },
      ],
    }));
    trustedOnSource = created;
    const oaep = toMechanism('RSA_PKCS_OAEP');
    const wrapped = await source.run<'wrapKey'>((session) => ({ op: 'wrapKey', session, mechanism: oaep, wrappingKey: created, key: sourceKey }));
    return await target.run<'unwrapKey'>((session) => ({
      op: 'unwrapKey',
      session,
      mechanism: oaep,
      unwrappingKey: pair.privateKey,
      wrapped,
      template: domainTemplate(),
    }));
  } finally {
    const destroy = (m: Member, object: Handle) => m.run<'destroyObject'>((session) => ({ op: 'destroyObject', session, object })).catch(() => undefined);
    await Promise.all([
      destroy(target, pair.publicKey),
      destroy(target, pair.privateKey),
      ...(trustedOnSource ? [destroy(source, trustedOnSource)] : []),
    ]);
  }
}
