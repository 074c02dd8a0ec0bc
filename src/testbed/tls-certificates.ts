/**
 * Certificates for tests and benchmarks of remote member hosts over mutual TLS, made with the openssl
 * command line (node:crypto makes keys, not X.509 certificates): a CA, a host certificate
 * for 127.0.0.1 and localhost, client certificates signed by the CA (one of them already
 * expired), and a second CA with a client of its own (a stranger to the hosts).
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const OPENSSL = '/usr/bin/openssl';

/** A certificate and its key (PEM files). */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

/** What {@link makeCertificates} made. */
export interface TestCertificates {
  /** The CA's certificate (what hosts and clients trust). */
  readonly ca: string;
  /** A CA nobody trusts. */
  readonly otherCa: string;
  /** The host's certificate: CN member-host, SAN IP:127.0.0.1 and DNS:localhost. */
  readonly host: CertFiles;
  /** A client certificate signed by the CA, with subject CN `name`. */
  client(name: string): CertFiles;
  /** A client signed by the CA whose certificate expired yesterday (CN expired-app). */
  readonly expired: CertFiles;
  /** A client signed by the other CA (CN stranger). */
  readonly stranger: CertFiles;
}

async function key(path: string): Promise<void> {
  await run(OPENSSL, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
}

async function selfSigned(dir: string, name: string): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  await key(files.key);
  await run(OPENSSL, ['req', '-x509', '-new', '-key', files.key, '-out', files.cert, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return files;
}

async function signed(dir: string, ca: CertFiles, name: string, options: { days?: number; extensions?: string } = {}): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  await key(files.key);
  const csr = join(dir, `${name}.csr`);
  await run(OPENSSL, ['req', '-new', '-key', files.key, '-out', csr, '-subj', `/CN=${name}`]);
  const ext = join(dir, `${name}.ext`);
  await writeFile(ext, options.extensions ?? 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');
  // -days -1: notAfter a day before notBefore, so the certificate is expired from the start.
  await run(OPENSSL, ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', files.cert, '-days', String(options.days ?? 2), '-extfile', ext]);
  return files;
}

/** Makes the certificates in `dir` (created); clients are made by name up front: `clients`. */
export async function makeCertificates(dir: string, clients: readonly string[]): Promise<TestCertificates> {
  await mkdir(dir, { recursive: true });
  const ca = await selfSigned(dir, 'test-ca');
  const other = await selfSigned(dir, 'other-ca');
  const host = await signed(dir, ca, 'member-host', { extensions: 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' });
  const made = new Map<string, CertFiles>();
  for (const name of clients) made.set(name, await signed(dir, ca, name));
  const expired = await signed(dir, ca, 'expired-app', { days: -1 });
  const stranger = await signed(dir, other, 'stranger');
  return {
    ca: ca.cert,
    otherCa: other.cert,
    host,
    client(name) {
      const files = made.get(name);
      if (files === undefined) throw new Error(`no client certificate ${name} was made`);
      return files;
    },
    expired,
    stranger,
  };
}
