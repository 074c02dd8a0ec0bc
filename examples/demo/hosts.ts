/**
 * The member host processes of a group, through the public `transportFactory` option: the
 * factory builds the default transport (a {@link HostTransport}, one per connection: a
 * recovered member runs on a new host) and keeps it, so the demo can name each host's pid,
 * kill or freeze it, and make sure none outlives the demo.
 */
import { HostTransport, type GroupConfig } from '../../src/index.js';
import type { Cleanup } from './cleanup.js';

/** The hosts of one group. */
export class Hosts {
  readonly #current = new Map<string, HostTransport>();
  readonly #cleanup: Cleanup;

  constructor(cleanup: Cleanup) {
    this.#cleanup = cleanup;
  }

  /** The `transportFactory` to give the group. */
  readonly factory: NonNullable<GroupConfig['transportFactory']> = (member, makeDefault) => {
    const transport = makeDefault();
    if (transport instanceof HostTransport) {
      this.#current.set(member.name, transport);
      this.#cleanup.host(() => transport.pid);
    }
    return transport;
  };

  /** The pid of the host serving `member` now (undefined before it is spawned). */
  pid(member: string): number | undefined {
    return this.#current.get(member)?.pid;
  }
}
