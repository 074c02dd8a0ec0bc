/**
 * The virtual slot and its token as PKCS#11 describes them: the library, the one slot
 * (a stable id, physical slots hidden), the token (a label, a serial derived from the
 * domain key, the flags and limits that hold on every member). The mechanisms are the
 * members' (VirtualSlot.mechanisms).
 */
import { createHash } from 'node:crypto';
import type { ModuleInfo, SlotInfo, TokenInfo } from 'pkcs11js';
import type { TokenLimits } from '../slot/slot-capabilities.js';
import { pkcs11js } from '../native/pkcs11js.js';

/** The virtual slot's id: the same in every process and across restarts. */
export const VIRTUAL_SLOT_ID = 0x4841;

/** The token label the virtual slot shows when the facade is given none. */
export const DEFAULT_LABEL = 'pkcs11-ha';

/** A fixed-width PKCS#11 text field: space-padded, as modules fill them. */
export function padded(text: string, width: number): string {
  return text.slice(0, width).padEnd(width, ' ');
}

const VERSION = { major: 0, minor: 1 } as const;
/** CKF_TOKEN_PRESENT (pkcs11js has no constant for it). */
const CKF_TOKEN_PRESENT = 0x1;

/** C_GetInfo. */
export function moduleInfo(): ModuleInfo {
  return {
    cryptokiVersion: { major: 2, minor: 40 },
    manufacturerID: padded('pkcs11-ha', 32),
    flags: 0,
    libraryDescription: padded('pkcs11-ha virtual slot', 32),
    libraryVersion: { ...VERSION },
  };
}

/** C_GetSlotInfo. */
export function slotInfo(slot: Buffer): SlotInfo {
  return {
    slotDescription: padded('pkcs11-ha virtual slot', 64),
    manufacturerID: padded('pkcs11-ha', 32),
    flags: CKF_TOKEN_PRESENT,
    hardwareVersion: { ...VERSION },
    firmwareVersion: { ...VERSION },
    slotID: slot,
  } as SlotInfo;
}

/**
 * The token serial: 16 hex digits of a SHA-256 over the domain key's check value (the same
 * for every member and every process of the group), or over the member names when the
 * group has no domain.
 */
export function tokenSerial(domainCheckValue: string | undefined, memberNames: readonly string[]): string {
  const basis = domainCheckValue !== undefined ? `domain:${domainCheckValue}` : `members:${memberNames.join('\0')}`;
  return createHash('sha256').update(basis).digest('hex').slice(0, 16);
}

/** What C_GetTokenInfo needs from the group. */
export interface TokenFacts {
  readonly label: string;
  readonly serial: string;
  /** The virtual slot's sessions (this process's, through the facade). */
  readonly sessions: number;
  readonly rwSessions: number;
  /** What holds on every serving member. */
  readonly limits: TokenLimits;
}

const UNAVAILABLE = 0xffffffffffffffffn;
/** CKF_CLOCK_ON_TOKEN: the clock shown is this host's, not a member's. */
const CKF_CLOCK_ON_TOKEN = 0x800;
/** CKF_PROTECTED_AUTHENTICATION_PATH: the facade takes PINs as arguments only. */
const CKF_PROTECTED_AUTHENTICATION_PATH = 0x100;

/** A member limit as C_GetTokenInfo gives it: -1 (a member does not say) as CK_UNAVAILABLE_INFORMATION. */
const limit = (v: number): number | bigint => (v < 0 ? UNAVAILABLE : v);

/**
 * C_GetTokenInfo of the virtual token. The flags and limits are the ones that hold on
 * every serving member (slot-capabilities.ts), always with CKF_TOKEN_INITIALIZED and
 * without the write-protected or clock flags of one; the virtual slot has no session limit
 * of its own (its sessions are not members' sessions) and counts its own sessions; the
 * clock is this host's.
 */
export function tokenInfo(facts: TokenFacts): TokenInfo {
  const now = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const l = facts.limits;
  return {
    label: padded(facts.label, 32),
    manufacturerID: padded('pkcs11-ha', 32),
    model: padded('HA group', 16),
    serialNumber: padded(facts.serial, 16),
    flags: ((l.flags | pkcs11js.CKF_TOKEN_INITIALIZED) & ~(CKF_CLOCK_ON_TOKEN | CKF_PROTECTED_AUTHENTICATION_PATH)) >>> 0,
    maxSessionCount: 0,
    sessionCount: facts.sessions,
    maxRwSessionCount: 0,
    rwSessionCount: facts.rwSessions,
    maxPinLen: limit(l.maxPinLen),
    minPinLen: limit(l.minPinLen),
    hardwareVersion: { ...VERSION },
    firmwareVersion: { ...VERSION },
    utcTime: `${now}00`,
    totalPublicMemory: limit(l.totalPublicMemory),
    freePublicMemory: limit(l.freePublicMemory),
    totalPrivateMemory: limit(l.totalPrivateMemory),
    freePrivateMemory: limit(l.freePrivateMemory),
  } as unknown as TokenInfo;
}
