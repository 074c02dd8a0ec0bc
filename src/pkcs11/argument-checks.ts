/**
 * Checks and message helpers shared by the attribute table, the template codec and the
 * mechanism table: what a caller-given value is, how to name it in an error without
 * revealing its bytes, and which known name a typo most likely meant.
 */

/** Largest value pkcs11js can pass for a CK_ULONG (it reads numbers as uint32). */
export const MAX_ULONG = 0xffff_ffff;

/** The JavaScript type of a value, for messages; never the value itself. */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (Buffer.isBuffer(value)) return 'Buffer';
  if (value instanceof Uint8Array) return 'Uint8Array';
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'number (NaN)';
    if (!Number.isFinite(value)) return 'number (non-finite)';
    if (!Number.isInteger(value)) return 'number (not an integer)';
    if (value < 0) return 'number (negative)';
    if (value > MAX_ULONG) return 'number (above 0xffffffff)';
    return 'number';
  }
  if (typeof value === 'object') {
    const ctor = (value as { constructor?: { name?: unknown } }).constructor;
    const ctorName = typeof ctor?.name === 'string' ? ctor.name : '';
    return ctorName && ctorName !== 'Object' ? ctorName : 'object';
  }
  return typeof value;
}

/** Quotes a caller-given name (never key material) for a message, bounded in length. */
export function quote(name: unknown): string {
  const text = String(name);
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 61)}...` : text);
}

/** True for a Buffer or any other Uint8Array. */
export function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

/** An exact-size, unpooled Buffer copy of `bytes` (safe to post to a worker). */
export function ownBuffer(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(bytes.length);
  out.set(bytes);
  return out;
}

/** True for an integer that pkcs11js can pass as a CK_ULONG. */
export function isUlong(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_ULONG;
}

/** True for an object literal (or `Object.create(null)`), not an array, Map, Buffer or class instance. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The known name closest to `given`, if any is close enough to be a likely typo. */
export function closest(given: string, known: Iterable<string>): string | undefined {
  const norm = (s: string): string => s.toLowerCase().replace(/^ck[amko]_/, '').replace(/[_\-\s]/g, '');
  const candidates = [...known];
  const g = norm(given);
  if (g.length >= 3) {
    const prefixed = candidates.find((candidate) => norm(candidate).startsWith(g));
    if (prefixed !== undefined) return prefixed;
  }
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = levenshtein(g, norm(candidate));
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const limit = g.length <= 3 ? 1 : Math.max(2, Math.floor(g.length / 3));
  return bestDistance <= limit ? best : undefined;
}

/**
 * A CK_ULONG given as a number or by one of `table`'s names. A name the table lacks
 * throws what `unknown` makes of it and the closest known name; anything else gives
 * undefined (the caller says what it expected).
 */
export function ulongOrName(value: unknown, table: ReadonlyMap<string, number>, unknown: (name: string, suggestion: string | undefined) => Error): number | undefined {
  if (isUlong(value)) return value;
  if (typeof value !== 'string') return undefined;
  const n = table.get(value);
  if (n !== undefined) return n;
  throw unknown(value, closest(value, table.keys()));
}
