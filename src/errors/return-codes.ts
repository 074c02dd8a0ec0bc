/**
 * PKCS#11 v2.40 return codes (CKR_*), name <-> number.
 *
 * Built from the constants pkcs11js exports, so the names always match what pkcs11js puts
 * in its own errors, plus the v2.40 codes pkcs11js lacks, written by hand.
 */
import { pkcs11js } from '../native/pkcs11js.js';

/** CKR_OK: the one return value that is not a failure. */
export const CKR_OK = 0;

/** First vendor-defined return value; every value at or above it is private to a module. */
export const CKR_VENDOR_DEFINED = 0x80000000;

/** v2.40 codes that pkcs11js 2.1.7 does not export (values from pkcs11t.h v2.40). */
const MISSING_FROM_PKCS11JS: ReadonlyArray<readonly [string, number]> = [
  ['CKR_ACTION_PROHIBITED', 0x0000001b],
  ['CKR_CURVE_NOT_SUPPORTED', 0x00000140],
  ['CKR_VENDOR_DEFINED', CKR_VENDOR_DEFINED],
];

function buildTable(): { byName: Map<string, number>; byValue: Map<number, string> } {
  const byName = new Map<string, number>();
  for (const [name, value] of Object.entries(pkcs11js) as [string, unknown][]) {
    if (name.startsWith('CKR_') && typeof value === 'number') byName.set(name, value);
  }
  // Hand-written entries only fill gaps: a newer pkcs11js that exports them wins.
  for (const [name, value] of MISSING_FROM_PKCS11JS) {
    if (!byName.has(name)) byName.set(name, value);
  }
  const byValue = new Map<number, string>();
  // First name wins should an alias ever appear, so ckrName stays deterministic.
  for (const [name, value] of byName) {
    if (!byValue.has(value)) byValue.set(value, name);
  }
  return { byName, byValue };
}

const { byName, byValue } = buildTable();

/** Every known return code, name -> number (CKR_OK included). */
export const RETURN_CODES: ReadonlyMap<string, number> = byName;

/**
 * Reads `rv` as a CK_ULONG. Negative 32-bit values are taken as their unsigned form, since
 * some bindings hand CK_RV over as a signed int. Anything else that is not a non-negative
 * safe integer gives undefined.
 */
export function toUlong(rv: number): number | undefined {
  if (!Number.isSafeInteger(rv)) return undefined;
  if (rv >= 0) return rv;
  if (rv >= -0x80000000) return rv >>> 0;
  return undefined;
}

function hex(rv: number): string {
  return `0x${rv.toString(16).padStart(8, '0')}`;
}

/**
 * Name of a return value, e.g. `ckrName(0xa0) === 'CKR_PIN_INCORRECT'`. Unknown values give
 * `CKR_VENDOR_DEFINED_0x80000001` (at or above CKR_VENDOR_DEFINED) or `CKR_0x00000aaa`;
 * values that are no CK_ULONG at all give `CKR_INVALID(<value>)`. Never throws, so it is
 * safe to use while building an error message.
 */
export function ckrName(rv: number): string {
  const value = toUlong(rv);
  if (value === undefined) return `CKR_INVALID(${String(rv)})`;
  const known = byValue.get(value);
  if (known !== undefined) return known;
  return value >= CKR_VENDOR_DEFINED ? `CKR_VENDOR_DEFINED_${hex(value)}` : `CKR_${hex(value)}`;
}

const GENERATED_NAME = /^CKR_(?:VENDOR_DEFINED_)?0x([0-9a-f]{8,13})$/;

/**
 * Number of a return code name, e.g. `ckrValue('CKR_PIN_INCORRECT') === 0xa0`. Also reads
 * back the names {@link ckrName} makes up for unknown values, so the two round-trip.
 * Unknown names give undefined.
 */
export function ckrValue(name: string): number | undefined {
  const known = byName.get(name);
  if (known !== undefined) return known;
  const match = GENERATED_NAME.exec(name);
  if (!match?.[1]) return undefined;
  const value = Number.parseInt(match[1], 16);
  // Only the canonical spelling counts, e.g. not `CKR_0x000000a0` for CKR_PIN_INCORRECT.
  return ckrName(value) === name ? value : undefined;
}
