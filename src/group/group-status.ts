/**
 * The plain snapshots a group gives of itself: for status output, a person can print them.
 */
import type { MemberSnapshot } from '../member/member.js';

/** A plain snapshot of the group, for status output. */
export interface GroupStatus {
  /** When the snapshot was taken: wall-clock ms since the Unix epoch (through the group's clock). */
  readonly time: number;
  /** The member that runs key management and multi-part operations, if any serves. */
  readonly primary: string | undefined;
  readonly scheduler: string;
  readonly loggedIn: boolean;
  /** Virtual objects known to this process. */
  readonly objects: number;
  /** Check value of the group's domain key, or undefined when the group has none. */
  readonly domain: string | undefined;
  /** Members that owe replicas, deletions or attribute changes, with counts. */
  readonly owed: Readonly<Record<string, number>>;
  readonly members: readonly MemberStatus[];
}

/** One member in {@link GroupStatus}: its snapshot and how many items it owes the group. */
export interface MemberStatus extends MemberSnapshot {
  /** Replicas, deletions and attribute changes this member still owes. */
  readonly owed: number;
  /**
   * When the member entered its current state: wall-clock ms since the Unix epoch (the
   * `since` inside a failed or recovering `state` is the group clock's monotonic count).
   */
  readonly changedAt: number | undefined;
  /** The process id of the member host serving it (`transport: 'host'`); undefined in process, and while failed or removed. */
  readonly pid: number | undefined;
}

/** Where an object lives, for diagnostics (see {@link HaGroup.describeObject}). */
export interface ObjectDescription {
  /** Members holding it now. */
  readonly holders: readonly string[];
  readonly name: string;
  readonly fingerprint: string | undefined;
}
