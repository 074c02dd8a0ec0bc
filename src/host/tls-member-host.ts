/**
 * A remote member host: one token served over TLS 1.3 to many application processes,
 * each proving itself with a client certificate signed by the configured CA (and, with an
 * allow-list, carrying one of the allowed subject names). `pkcs11-ha host --listen
 * <addr:port> --config <host.json>` runs one.
 *
 * It is the same {@link MemberHost} a group spawns for a local member, without the Unix
 * socket and its secret (the TLS handshake authenticates the client), and with the
 * per-client login guard on (`client-login-guard.ts`): login state, sessions and session
 * objects are kept per client. A refused handshake (unknown CA, expired or missing client
 * certificate, plain TCP, a subject not allowed) is logged with the peer's address and
 * the reason; nothing reaches the host for it, and the others are served on.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { systemClock, type Clock } from '../clock/clock.js';
import type { TokenInfo } from '../transport/transport.js';
import type { InProcessTransportOptions } from '../transport/in-process-transport.js';
import type { EmulatedCapacity, HostCalls } from './host-ipc.js';
import { MemberHost } from './member-host.js';

/** The TLS identity of a member host and whom it lets in. */
export interface TlsHostIdentity {
  /** PEM file of the CA client certificates must be signed by. */
  readonly ca: string;
  /** PEM file of the host's certificate (its name or IP address as the clients reach it). */
  readonly cert: string;
  /** PEM file of the host's private key. */
  readonly key: string;
  /** Client subject names (CN) let in; absent: every client the CA signed. */
  readonly allow?: readonly string[];
}

/** Options of {@link TlsMemberHost.start}. */
export interface TlsMemberHostOptions extends InProcessTransportOptions {
  /** Address and port to listen on (port 0: any free one, see {@link TlsMemberHost.address}). */
  readonly listen: { readonly host: string; readonly port: number };
  readonly tls: TlsHostIdentity;
  /**
   * While a command has been pending this long, heartbeats every interval (ms); clients' deadlines must be at least 3 times this.
   * While other clients keep it busy, each client is also told that load every interval (its report counts for 3 intervals). @default 1000
   */
  readonly heartbeatIntervalMs?: number;
  /** Where short cryptographic calls run (see `GroupConfig.hostCalls`). @default 'inline' */
  readonly calls?: HostCalls;
  /** Where the host's log lines go (handshakes refused, clients in and out). @default stderr */
  readonly log?: (line: string) => void;
  /** Called when the module's command threads die: the host cannot serve any more. */
  readonly onModuleLost?: (error: Error) => void;
  /** The time seam. @default systemClock */
  readonly clock?: Clock;
  /** EMULATION, for measurements only: run every command through a device of this capacity (`capacity-emulator.ts`). */
  readonly emulate?: EmulatedCapacity;
}

/** The subject name (CN) of a client certificate, or undefined. */
function subjectName(socket: TLSSocket): string | undefined {
  const cn = socket.getPeerCertificate().subject?.CN as string | string[] | undefined;
  return typeof cn === 'string' ? cn : undefined;
}

const peer = (socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string => `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;

/** A member host serving one token over mutual TLS. */
export class TlsMemberHost {
  readonly #host: MemberHost;
  readonly #server: Server;
  readonly #log: (line: string) => void;
  #closing: Promise<void> | undefined;

  private constructor(host: MemberHost, server: Server, log: (line: string) => void) {
    this.#host = host;
    this.#server = server;
    this.#log = log;
  }

  /**
   * Loads the module, finds the token and listens.
   * @throws what `MemberHost.start` throws (ConfigError, MemberUnreachableError), or the
   *   error of reading the TLS files or of listening
   */
  static async start(options: TlsMemberHostOptions): Promise<TlsMemberHost> {
    const log = options.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
    const name = options.member;
    // Read before the module is loaded: a wrong path fails fast.
    const secure = { ca: readFileSync(options.tls.ca), cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) };
    const allow = options.tls.allow === undefined ? undefined : new Set(options.tls.allow);
    const host = await MemberHost.start(
      {
        member: options.member,
        modulePath: options.modulePath,
        moduleEnv: options.moduleEnv,
        token: options.token,
        threads: options.threads,
        configPath: options.configPath,
        heartbeatIntervalMs: options.heartbeatIntervalMs ?? 1000,
        calls: options.calls ?? 'inline',
        guardClients: true,
        ...(options.emulate === undefined ? {} : { emulate: options.emulate }),
      },
      // No shared secret: the TLS handshake proves the client; its hello carries none.
      Buffer.alloc(0),
      (error) => {
        log(`member host ${name}: module lost: ${error.message}`);
        options.onModuleLost?.(error);
      },
      options.clock ?? systemClock,
    );
    // rejectUnauthorized is false so that the reason of a refusal can be logged: with it
    // true, Node drops a client whose certificate fails (TLS 1.3) without telling why. The
    // check is made here instead, before the socket reaches the host.
    const server = createServer({ ...secure, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3', handshakeTimeout: 10_000 }, (socket) => {
      if (!socket.authorized) {
        const none = Object.keys(socket.getPeerCertificate()).length === 0;
        const why = none ? 'no client certificate' : `client certificate ${JSON.stringify(subjectName(socket) ?? '')} refused: ${String(socket.authorizationError)}`;
        log(`member host ${name}: refused ${peer(socket)}: TLS handshake failed: ${why}`);
        socket.destroy();
        return;
      }
      const subject = subjectName(socket);
      if (allow !== undefined && (subject === undefined || !allow.has(subject))) {
        log(`member host ${name}: refused ${peer(socket)}: client ${JSON.stringify(subject ?? '')} is not in the allow-list`);
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      const where = peer(socket);
      log(`member host ${name}: client ${JSON.stringify(subject ?? '')} connected from ${where}`);
      socket.once('close', () => log(`member host ${name}: client ${JSON.stringify(subject ?? '')} from ${where} disconnected`));
      host.serve(socket, (reason) => log(`member host ${name}: dropped client ${JSON.stringify(subject ?? '')} from ${where}: ${reason}`));
    });
    server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: TLSSocket) => {
      log(`member host ${name}: refused ${peer(socket)}: TLS handshake failed: ${error.code ?? 'error'}: ${error.message}`);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.listen.port, options.listen.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      await host.close();
      throw error;
    }
    const self = new TlsMemberHost(host, server, log);
    log(`member host ${name}: serving token ${JSON.stringify(host.token.label)} on ${self.address.host}:${self.address.port} (TLS 1.3, client certificates required${allow === undefined ? '' : `, ${allow.size} allowed`})`);
    return self;
  }

  /** The address and port listened on. */
  get address(): { readonly host: string; readonly port: number } {
    const a = this.#server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** The token served. */
  get token(): TokenInfo {
    return this.#host.token;
  }

  /** Stops listening, drops the clients and closes the module. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#server.close();
      await this.#host.close();
      this.#log(`member host ${this.#host.token.label}: stopped`);
    })();
    return this.#closing;
  }
}
