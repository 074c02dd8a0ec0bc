/**
 * The byte stream to a remote member host: TLS 1.3 with a client certificate (mutual
 * TLS). The client checks the host's certificate against the given CA and its name (or
 * IP address) against the URL's host. The RpcClient runs its protocol over it unchanged.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect } from 'node:tls';

/** How to reach a remote member host: `tls://host:port` and the files of the client's identity. */
export interface TlsEndpoint {
  /** `tls://host:port` (an IPv6 address in brackets: `tls://[::1]:7000`). */
  readonly url: string;
  /** PEM file of the CA that signed the host's certificate (only it is trusted). */
  readonly ca: string;
  /** PEM file of this client's certificate, which the host checks. */
  readonly cert: string;
  /** PEM file of this client's private key. */
  readonly key: string;
  /** The name the host's certificate must carry, when it is not the URL's host. */
  readonly servername?: string;
}

/** A `tls://host:port` URL's parts. */
export interface TlsAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * The host and port of a `tls://host:port` URL.
 * @throws {@link TypeError} when it is not one (the value is echoed)
 */
export function parseTlsUrl(url: string): TlsAddress {
  const m = /^tls:\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]+):(\d{1,5})\/?$/.exec(url);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || !Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`must be tls://host:port, got ${JSON.stringify(url)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/**
 * A `connect` function for an `RpcClient`: each call opens a new TLS 1.3 connection to the
 * endpoint's host (the files are read at each call, so a renewed certificate is used at
 * the next reconnection).
 * @throws what reading the files throws (the RpcClient reports it as the member unreachable)
 */
export function tlsConnector(endpoint: TlsEndpoint): () => Duplex {
  const { host, port } = parseTlsUrl(endpoint.url);
  return () => {
    const socket = connect({
      host,
      port,
      ca: readFileSync(endpoint.ca),
      cert: readFileSync(endpoint.cert),
      key: readFileSync(endpoint.key),
      minVersion: 'TLSv1.3',
      // Node checks the certificate against `servername`, else `host` (an IP address against its IP SANs).
      ...(endpoint.servername !== undefined ? { servername: endpoint.servername } : isIP(host) === 0 ? { servername: host } : {}),
    });
    socket.setNoDelay(true);
    return socket;
  };
}
