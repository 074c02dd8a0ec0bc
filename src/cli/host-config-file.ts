/**
 * The configuration file of `pkcs11-ha host` (a remote member host): the token it serves
 * and its TLS identity. Paths are relative to the working directory. It holds no PIN: the
 * clients log in, each with its own.
 *
 * @example
 * {
 *   "name": "hsm-a",
 *   "module": { "path": "/usr/lib/softhsm/libsofthsm2.so", "env": { "SOFTHSM2_CONF": "/etc/hsm-a/softhsm2.conf" } },
 *   "token": { "label": "hsm-a" },
 *   "tls": { "ca": "ca.pem", "cert": "hsm-a.pem", "key": "hsm-a.key", "allow": ["app-1", "app-2"] }
 * }
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, HaError } from '../errors/ha-error.js';
import type { TlsMemberHostOptions } from '../host/tls-member-host.js';

const text = (what: string) => z.string({ error: `must be ${what}` }).min(1, { error: `must be ${what}` });

const hostFileSchema = z.strictObject({
  name: text('a non-empty string').optional(),
  module: z.union([text('a path'), z.strictObject({ path: text('a path'), env: z.record(z.string(), z.string()).optional() })], { error: 'must be a path or { path, env }' }),
  token: z.union([z.strictObject({ label: text('a label') }), z.strictObject({ serial: text('a serial') })], { error: 'must be { label } or { serial }' }),
  tls: z.strictObject({
    ca: text('a path'),
    cert: text('a path'),
    key: text('a path'),
    allow: z.array(text('a subject name'), { error: 'must be an array of subject names' }).optional(),
  }),
  threads: z.number().int().min(1).max(64).optional(),
  calls: z.enum(['inline', 'threads'], { error: "must be 'inline' or 'threads'" }).optional(),
  heartbeatIntervalMs: z.number().int().min(1).max(1_200_000).optional(),
});

/** What `pkcs11-ha host` reads from its `--config` file. */
export type HostFileConfig = z.input<typeof hostFileSchema>;

/**
 * `<addr>:<port>` (an IPv6 address in brackets) as a host and a port.
 * @throws {@link ConfigError} when it is not one
 */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(value);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port > 65535) throw new ConfigError('--listen', `must be <address>:<port>, got ${JSON.stringify(value)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/**
 * Reads and checks a host configuration file; the options of a TLS member host, without
 * where it listens.
 * @throws {@link HaError} `ERR_CONFIG` naming the file and the bad value
 */
export function loadHostConfigFile(path: string): Omit<TlsMemberHostOptions, 'listen'> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new HaError('ERR_CONFIG', `cannot read ${path} as JSON (${(error as NodeJS.ErrnoException).code ?? 'not JSON'})`);
  }
  const parsed = hostFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`${path}: ${issue.path.map(String).join('.') || 'config'}`, issue.message);
  }
  const c = parsed.data;
  const token: { label: string } | { serial: string } = 'label' in c.token ? { label: c.token.label } : { serial: c.token.serial };
  return {
    member: c.name ?? ('label' in token ? token.label : token.serial),
    modulePath: typeof c.module === 'string' ? c.module : c.module.path,
    moduleEnv: typeof c.module === 'string' ? {} : { ...c.module.env },
    token,
    threads: c.threads ?? 2,
    configPath: path,
    tls: c.tls,
    ...(c.calls === undefined ? {} : { calls: c.calls }),
    ...(c.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: c.heartbeatIntervalMs }),
  };
}
