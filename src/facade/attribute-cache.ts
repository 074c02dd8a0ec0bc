/**
 * Attribute values that cannot change while an object exists (PKCS#11 sets them at
 * creation only), kept per object so that applications reading them in loops (graphene
 * and node-webcrypto-p11 read the class, key type and sizes of a key before each use)
 * get the answer without a round trip to a member. Forgotten when the object goes.
 *
 * It also answers CKA_VALUE_LEN of secret keys made through the facade: SoftHSM reads 0
 * on an unwrapped key (and refuses the attribute in an unwrap template), so a replica
 * would answer 0 where the key's creation said 32.
 */
import { pkcs11js } from '../native/pkcs11js.js';

const F = pkcs11js;
/** Attributes fixed at creation. */
const IMMUTABLE: ReadonlySet<number> = new Set([
  F.CKA_CLASS,
  F.CKA_KEY_TYPE,
  F.CKA_TOKEN,
  F.CKA_MODULUS,
  F.CKA_MODULUS_BITS,
  F.CKA_PUBLIC_EXPONENT,
  F.CKA_EC_PARAMS,
  F.CKA_EC_POINT,
  F.CKA_VALUE_LEN,
  F.CKA_KEY_GEN_MECHANISM,
]);

/** A CK_ULONG attribute value as pkcs11js reads it (8 bytes, little-endian here). */
export function ulong(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** Cached immutable attribute values of the objects the facade handed out. */
export class AttributeCache {
  readonly #values = new Map<number, Map<number, Buffer>>();

  /** The values of `types`, when every one of them is known; undefined otherwise. */
  get(object: number, types: readonly number[]): { type: number; value: Buffer }[] | undefined {
    const known = this.#values.get(object);
    if (known === undefined || types.length === 0) return undefined;
    const out: { type: number; value: Buffer }[] = [];
    for (const type of types) {
      const value = known.get(type);
      if (value === undefined) return undefined;
      out.push({ type, value: Buffer.from(value) });
    }
    return out;
  }

  /**
   * Takes what a member read: immutable values are kept, a CKA_VALUE_LEN known from the
   * creation wins over a replica's 0. Returns the values to answer with.
   */
  merge(object: number, read: readonly { type: number; value: Buffer }[]): { type: number; value: Buffer }[] {
    let known = this.#values.get(object);
    return read.map((a) => {
      if (!IMMUTABLE.has(a.type)) return a;
      const kept = known?.get(a.type);
      if (kept !== undefined) return { type: a.type, value: Buffer.from(kept) };
      if (known === undefined) this.#values.set(object, (known = new Map()));
      known.set(a.type, Buffer.from(a.value));
      return a;
    });
  }

  /** Records a value known from the object's creation (CKA_VALUE_LEN of a new secret key). */
  set(object: number, type: number, value: Buffer): void {
    let known = this.#values.get(object);
    if (known === undefined) this.#values.set(object, (known = new Map()));
    known.set(type, value);
  }

  /** The object is gone. */
  forget(object: number): void {
    this.#values.delete(object);
  }
}
