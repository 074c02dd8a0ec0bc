/**
 * Buffers across a thread boundary. Structured clone copies a view's WHOLE backing
 * ArrayBuffer, and Node's small Buffers are views into an 8 KiB shared slab: so every
 * buffer is made compact before it is posted, and revived as a Buffer after.
 */

function compactView(view: Uint8Array): Uint8Array {
  return view.byteOffset === 0 && view.byteLength === view.buffer.byteLength ? view : new Uint8Array(view);
}

/** Returns `value` with every non-compact byte view replaced by a compact copy (two levels deep). */
export function compactForPost<T>(value: T): T {
  return compact(value, 0) as T;
}

function compact(value: unknown, depth: number): unknown {
  if (value instanceof Uint8Array) return compactView(value);
  if (depth > 2 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = compact(value[i], depth + 1);
      if (v !== value[i]) (out ??= value.slice())[i] = v;
    }
    return out ?? value;
  }
  let out: Record<string, unknown> | undefined;
  for (const key in value as Record<string, unknown>) {
    const old = (value as Record<string, unknown>)[key];
    const v = compact(old, depth + 1);
    if (v !== old) (out ??= { ...(value as Record<string, unknown>) })[key] = v;
  }
  return out ?? value;
}

/**
 * Turns the Uint8Arrays that structured clone (or v8.deserialize) delivers back into
 * Buffers: views without copying by default; with `copy`, Buffers that own their bytes
 * (a long-lived result must not pin a large socket chunk).
 */
export function reviveBuffers(value: unknown, copy = false): unknown {
  if (value instanceof Uint8Array) {
    if (copy) return Buffer.from(value);
    return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = reviveBuffers(value[i], copy);
    return value;
  }
  for (const key in value as Record<string, unknown>) {
    (value as Record<string, unknown>)[key] = reviveBuffers((value as Record<string, unknown>)[key], copy);
  }
  return value;
}
