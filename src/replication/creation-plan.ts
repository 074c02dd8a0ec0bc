/**
 * How a new object is created across the group: the search that finds what a creation
 * may leave on a member (for tentative entries and stray removal), and whether and how a
 * token key is staged (made as a session object, then copied as token objects everywhere).
 */
import type { ObjectKind, WireAttribute } from '../pkcs11/commands.js';
import type { Pkcs11Attribute } from '../pkcs11/template-codec.js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { ReplicaSource } from './replica-copy.js';
import { boolValue } from './replica-template.js';

/** Key types that a generation mechanism implies when the template does not say. */
export const KEY_TYPE_OF_MECHANISM = new Map<number, number>([
  [pkcs11js.CKM_AES_KEY_GEN, pkcs11js.CKK_AES],
  [pkcs11js.CKM_GENERIC_SECRET_KEY_GEN, pkcs11js.CKK_GENERIC_SECRET],
  [pkcs11js.CKM_DES3_KEY_GEN, pkcs11js.CKK_DES3],
  [pkcs11js.CKM_EC_KEY_PAIR_GEN, pkcs11js.CKK_EC],
  [pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11js.CKK_RSA],
]);

const KEY_CLASSES: ReadonlySet<unknown> = new Set([pkcs11js.CKO_SECRET_KEY, pkcs11js.CKO_PRIVATE_KEY, pkcs11js.CKO_PUBLIC_KEY]);

/**
 * The search that finds what a token-object creation could leave on a member: class, key
 * type, label and id as the new object will have them (an absent label or id is empty),
 * CKA_TOKEN=true. Used for tentative entries: it must be narrow (only such objects are
 * candidates for stray removal) and must not miss the object.
 */
export function creationSearch(template: readonly Pkcs11Attribute[], defaults: { readonly objectClass?: number; readonly keyType?: number | undefined } = {}): WireAttribute[] {
  const get = (type: number) => template.find((a) => a.type === type)?.value;
  const objectClass = get(pkcs11js.CKA_CLASS) ?? defaults.objectClass;
  const isKey = KEY_CLASSES.has(objectClass);
  const out: WireAttribute[] = [];
  if (objectClass !== undefined) out.push({ type: pkcs11js.CKA_CLASS, value: objectClass });
  const keyType = get(pkcs11js.CKA_KEY_TYPE) ?? defaults.keyType;
  if (isKey && keyType !== undefined) out.push({ type: pkcs11js.CKA_KEY_TYPE, value: keyType });
  out.push({ type: pkcs11js.CKA_LABEL, value: get(pkcs11js.CKA_LABEL) ?? Buffer.alloc(0) });
  // Only keys have CKA_ID; asking a data object for it would match nothing.
  const id = get(pkcs11js.CKA_ID) ?? (isKey ? Buffer.alloc(0) : undefined);
  if (id !== undefined) out.push({ type: pkcs11js.CKA_ID, value: id });
  out.push({ type: pkcs11js.CKA_TOKEN, value: true });
  return out;
}

/** The class and key type a creation search names, when it names both (or a class without key type); else undefined. */
export function kindOf(search: readonly WireAttribute[] | undefined): ObjectKind | undefined {
  const objectClass = search?.find((a) => a.type === pkcs11js.CKA_CLASS)?.value;
  const keyType = search?.find((a) => a.type === pkcs11js.CKA_KEY_TYPE)?.value;
  if (typeof objectClass !== 'number' || (keyType !== undefined && typeof keyType !== 'number')) return undefined;
  const isKey = objectClass === pkcs11js.CKO_SECRET_KEY || objectClass === pkcs11js.CKO_PRIVATE_KEY || objectClass === pkcs11js.CKO_PUBLIC_KEY;
  if (isKey && keyType === undefined) return undefined;
  return { objectClass, keyType };
}

/**
 * Whether objects made from these templates may be staged: keys only (their copies are
 * made from the replica template, which carries what a key needs), and not when a
 * template says CKA_DESTROYABLE=false (the staged session object could then not be
 * removed) or CKA_MODIFIABLE=false (SoftHSM refuses it in an unwrap template, so no copy
 * could be made, the creator's included). A copy the creator still cannot make sends the
 * creation back to primary-first (see {@link KeyManager.#create}).
 */
export function stageable(...templates: (readonly Pkcs11Attribute[])[]): boolean {
  return templates.every((t) =>
    t.every((a) => {
      if (a.type === pkcs11js.CKA_CLASS) return KEY_CLASSES.has(a.value);
      if (a.type === pkcs11js.CKA_DESTROYABLE || a.type === pkcs11js.CKA_MODIFIABLE) return boolValue(a.value) !== false;
      return true;
    }),
  );
}

/** A staged creation whose creator could not make its own copy: redo it primary-first. */
export class StagingRefused extends Error {
  constructor(cause: unknown) {
    super('the creator could not make its own copy of a staged object', { cause });
  }
}

/** The template with CKA_TOKEN=false: the staged object of a token object. */
export function asSessionObject(template: readonly Pkcs11Attribute[]): Pkcs11Attribute[] {
  return [...template.filter((a) => a.type !== pkcs11js.CKA_TOKEN), { type: pkcs11js.CKA_TOKEN, value: false }];
}

const TRUE = Buffer.from([1]);

/** What a staged object's copies are made from: the same, as token objects. */
export function asTokenCopy(copy: ReplicaSource): ReplicaSource {
  const read = copy.read.map((a) => (a.type === pkcs11js.CKA_TOKEN ? { type: a.type, value: TRUE } : a));
  const template = copy.template.map((a) => (a.type === pkcs11js.CKA_TOKEN ? { type: a.type, value: TRUE } : a));
  return { read, wrapped: copy.wrapped, template };
}
