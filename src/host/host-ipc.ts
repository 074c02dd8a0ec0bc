/**
 * What travels over a member host's IPC channel while it starts: the parent sends its
 * configuration and secret ({@link StartMessage}), the host answers ready or failed
 * ({@link HostStatusMessage}). Only a spawned host has this channel; the socket protocol
 * it then serves is `src/rpc/host-protocol.ts`.
 */
import type { SECRET_BYTES } from '../rpc/host-protocol.js';
import type { InProcessTransportOptions } from '../transport/in-process-transport.js';

/**
 * EMULATION: the capacity a member host pretends its device has (see `capacity-emulator.ts`).
 * Not a property of any real token.
 */
export interface EmulatedCapacity {
  /** Commands the emulated device runs at once. */
  readonly engines: number;
  /** Least time a command holds its engine, in milliseconds. */
  readonly serviceTimeMs: number;
}

/** Everything a member host needs to start, sent over IPC (never argv or env: it travels with the secret). */
export interface MemberHostConfig extends InProcessTransportOptions {
  /**
   * Where to listen; inside a directory only this user can enter. Absent: the host listens
   * nowhere itself and serves the connections handed to it (a TLS member host).
   */
  readonly socketPath?: string;
  /**
   * Whether several clients (application processes) share this host: each then gets its
   * own login state, sessions and session objects (`client-login-guard.ts`). @default false
   */
  readonly guardClients?: boolean;
  /** See `HostTransportOptions.heartbeatIntervalMs`. */
  readonly heartbeatIntervalMs: number;
  /** EMULATION of a device's capacity; absent for a plain host. */
  readonly emulate?: EmulatedCapacity;
  /** See `HostTransportOptions.calls`. */
  readonly calls: HostCalls;
}

/**
 * Where a member host makes short cryptographic calls: `'inline'` on its main thread, or
 * `'threads'` on its worker threads (see `GroupConfig.hostCalls`).
 */
export type HostCalls = 'inline' | 'threads';

/** Parent to host over IPC: the one message that starts the host. */
export interface StartMessage {
  readonly t: 'start';
  /** {@link SECRET_BYTES} random bytes every client must present in its hello. */
  readonly secret: Uint8Array;
  readonly config: MemberHostConfig;
}

/**
 * An error met while the host started, as plain data: enough for the parent to rebuild
 * the same typed error the in-process transport throws.
 */
export interface StartFailure {
  /** `HaError.code` when the error was one. */
  readonly code?: string;
  readonly message: string;
  /** `MemberUnreachableError.member`. */
  readonly member?: string;
  /** `ConfigError.path`. */
  readonly path?: string;
}

/** Host to parent over IPC: listening, or failed to start. */
export type HostStatusMessage = { readonly t: 'ready' } | { readonly t: 'failed'; readonly error: StartFailure };
