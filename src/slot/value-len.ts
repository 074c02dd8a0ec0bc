/**
 * CKA_VALUE_LEN of secret keys the group made. SoftHSM answers 0 for CKA_VALUE_LEN on a
 * secret key made by C_UnwrapKey, and every member's copy of a group-made key is one (the
 * replicas, and under staged creation the first copy too): the length given at creation
 * is kept with the object and answered in place of that 0.
 */
import type { VirtualObject } from '../catalog/catalog.js';
import { pkcs11js } from '../native/pkcs11js.js';
import type { ReadAttribute } from '../pkcs11/commands.js';
import type { Pkcs11Attribute } from '../pkcs11/template-codec.js';

/** Keeps the length a creation template gives (CKA_VALUE_LEN, or the length of CKA_VALUE for a secret key); returns the object. */
export function rememberValueLen(object: VirtualObject, template: readonly Pkcs11Attribute[]): VirtualObject {
  const len = template.find((a) => a.type === pkcs11js.CKA_VALUE_LEN)?.value;
  const value = template.find((a) => a.type === pkcs11js.CKA_VALUE)?.value;
  const secret = template.some((a) => a.type === pkcs11js.CKA_CLASS && a.value === pkcs11js.CKO_SECRET_KEY);
  const known = typeof len === 'number' ? len : secret && Buffer.isBuffer(value) ? value.length : undefined;
  if (known !== undefined && known > 0) object.valueLen = known;
  return object;
}

/** The attributes read, with a CKA_VALUE_LEN of 0 replaced by the length kept at creation. */
export function withValueLen(object: VirtualObject, read: ReadAttribute[]): ReadAttribute[] {
  const known = object.valueLen;
  if (known === undefined) return read;
  return read.map((a) => {
    if (a.type !== pkcs11js.CKA_VALUE_LEN || (a.value !== undefined && a.value.length > 0 && a.value.some((b) => b !== 0))) return a;
    const value = Buffer.alloc(a.value?.length === 4 ? 4 : 8);
    if (value.length === 4) value.writeUInt32LE(known);
    else value.writeBigUInt64LE(BigInt(known));
    return { type: a.type, value };
  });
}
