/**
 * The file-expressible part of a group configuration, defined once with zod: the same
 * definition validates a config (`parseFileConfig`, mapped to {@link ConfigError}s that
 * name the value's path and echo it, never a PIN) and gives the JSON schema shipped as
 * `pkcs11-ha/config.schema.json` (`configJsonSchema`, written by `npm run schema`).
 * Options a file cannot hold (clock, transportFactory, metrics, logger, on, a Scheduler
 * object) are checked by hand in group-config.ts, and refused in a file (`parseFileConfig`).
 */
import { z } from 'zod';
import { ConfigError } from '../errors/ha-error.js';

/** Where the generated schema claims to live (its `$id`). */
export const CONFIG_SCHEMA_ID = 'https://unpkg.com/pkcs11-ha/schema/pkcs11-ha.config.schema.json';

/** Keys whose values are never echoed: PINs and the like. */
const SECRET_KEY = /pin|secret|password/i;

/** Echoes a bad value for an error message, with anything that looks like a PIN redacted. */
export const show = (value: unknown): string => {
  try {
    return JSON.stringify(value, (key, v: unknown) => (SECRET_KEY.test(key) ? '<redacted>' : v)) ?? String(value);
  } catch {
    return typeof value;
  }
};

const must = (what: string) => ({ error: `must be ${what}` });
const nonEmpty = (what = 'a non-empty string') => z.string(must(what)).min(1, must(what));
const int = (min: number, max: number) => {
  const m = must(`an integer from ${min} to ${max}`);
  return z.number(m).int(m).min(min, m).max(max, m);
};
const oneOf = <const T extends readonly [string, ...string[]]>(values: T, extra?: string) => {
  const all = [...values.map((v) => `'${v}'`), ...(extra === undefined ? [] : [extra])];
  return z.enum(values, must(all.length > 1 ? `${all.slice(0, -1).join(', ')} or ${all.at(-1)}` : all[0]!));
};

/** A strict object: an unknown key is refused, naming the keys it knows (and `alsoKnown`, checked elsewhere). */
function options<T extends z.ZodRawShape>(shape: T, what: string, alsoKnown: readonly string[] = []) {
  const known = [...Object.keys(shape), ...alsoKnown].join(', ');
  return z.strictObject(shape, { error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown option (known: ${known})` : `must be ${what}`) });
}

/** A PIN: inline, from an environment variable, or from a file (read when the config is resolved). */
const pinSource = (what: string) =>
  z
    .union([nonEmpty(), options({ env: nonEmpty('a variable name') }, '{ env }'), options({ file: nonEmpty('a path') }, '{ file }')], must('a non-empty string, { env: NAME } or { file: path }'))
    .describe(`${what}: the PIN itself, { "env": "NAME" } (an environment variable) or { "file": "path" } (its first line; relative to the working directory). Never printed.`);

/** One member as a file holds it. */
export const memberFileSchema = options(
  {
    name: nonEmpty().optional().describe('A unique name for logs, events and status. Default: the token label or serial.'),
    module: z
      .union([nonEmpty('a path'), options({ path: nonEmpty(), env: z.record(z.string(must('a map of names to strings')), z.string(must('a map of names to strings')), must('a map of names to strings')).optional() }, '{ path, env }')], must('a path or { path, env }'))
      .describe('The PKCS#11 module: a path, or { path, env } with the environment it reads at C_Initialize.'),
    token: z
      .union([options({ label: nonEmpty() }, '{ label }'), options({ serial: nonEmpty() }, '{ serial }')], must('{ label } or { serial } (one of them, non-empty)'))
      .describe('Which token of the module: { label } or { serial }.'),
    role: oneOf(['active', 'standby']).optional().describe('Active members take load; standby members only when no active member is left. Default: active.'),
    soPin: pinSource('The security officer PIN (the domain key ceremony)').optional(),
    userPin: pinSource('The user PIN, to log this member back in after it recovers').optional(),
  },
  'an object',
);

/** One member reached over mutual TLS on a remote member host (`pkcs11-ha host`), as a file holds it. */
export const remoteMemberFileSchema = options(
  {
    name: nonEmpty().optional().describe('A unique name for logs, events and status. Default: the URL.'),
    url: z.string(must('tls://host:port')).regex(/^tls:\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]+):\d{1,5}\/?$/, must('tls://host:port')).describe('The remote member host: tls://host:port.'),
    tls: options(
      {
        ca: nonEmpty('a path').describe("PEM file of the CA that signed the host's certificate."),
        cert: nonEmpty('a path').describe("PEM file of this application's client certificate."),
        key: nonEmpty('a path').describe("PEM file of this application's private key."),
        servername: nonEmpty().optional().describe("The name the host's certificate must carry, when not the URL's host."),
      },
      '{ ca, cert, key, servername? }',
    ).describe('Mutual TLS: the host is checked against ca and its name; this application proves itself with cert and key.'),
    role: oneOf(['active', 'standby']).optional().describe('Active members take load; standby members only when no active member is left. Default: active.'),
    soPin: pinSource('The security officer PIN (the domain key ceremony)').optional(),
    userPin: pinSource('The user PIN, to log this member back in after it recovers').optional(),
  },
  'an object',
);

/** A member as a file holds it: a module on this machine, or a remote member host. */
export const anyMemberFileSchema = z.union([memberFileSchema, remoteMemberFileSchema], must('a member: { module, token } or { url, tls }'));

/**
 * The options of a group configuration that code alone can give (functions and objects),
 * besides a Scheduler object: known to `HaGroup.open`, refused in a file.
 */
export const CODE_ONLY_OPTIONS = ['clock', 'transportFactory', 'metrics', 'logger', 'on'] as const;

/** What the file options of a group configuration are, with the scheduler's message (`schedulerExtra`: what code may also give). */
const groupFileShape = (schedulerExtra?: string) => ({
  $schema: z.string(must('a string')).optional().describe('The JSON schema of this file (ignored).'),
  members: z.array(anyMemberFileSchema, must('a non-empty array')).min(1, must('a non-empty array')).max(64, must('at most 64 members')).describe('The members, in order: the first serving active member is the primary (see memberOrder).'),
  memberOrder: z
    .union([z.literal('config'), options({ clientId: nonEmpty() }, '{ clientId }')], must("'config' or { clientId }"))
    .optional()
    .describe("'config': the order written (default). { clientId }: the active members rotated by a stable hash of the id, so that clients spread their primaries over the members; the same id always gives the same order."),
  label: nonEmpty('1 to 32 characters').max(32, must('1 to 32 characters')).optional().describe("The virtual token's label, as C_GetTokenInfo shows it through pkcs11-ha/pkcs11js (PKCS11_HA_LABEL overrides it). Default: pkcs11-ha."),
  threadsPerMember: int(1, 64).optional().describe('Worker threads per member. Default: 2.'),
  maxSessionsPerMember: int(1, 4096).optional().describe('Most sessions (commands in flight) per member. Default: 32.'),
  scheduler: oneOf(['least-busy', 'peak-ewma'], schedulerExtra).optional().describe('The load-balancing strategy. Default: least-busy.'),
  minReplicas: int(1, 64).optional().describe('Fewest members a new key must reach (at most the member count). Default: 1.'),
  unextractableKeys: oneOf(['wrap-with-trusted', 'reject']).optional().describe('What a request for CKA_EXTRACTABLE=false gets. Default: wrap-with-trusted.'),
  keyCreation: oneOf(['parallel', 'primary-first']).optional().describe('How a new token key reaches the members. Default: parallel.'),
  countHostLoad: z.boolean(must('a boolean')).optional().describe('Whether the least-busy scheduler adds the commands a remote member host reports for other application processes to its own count. Default: true.'),
  hostCalls: oneOf(['inline', 'threads']).optional().describe("Where a member host makes short cryptographic calls. Default: inline."),
  inProcessCalls: oneOf(['inline', 'threads']).optional().describe('Where an in-process member makes short cryptographic calls. Default: inline.'),
  journalPath: nonEmpty('a non-empty path').optional().describe('File keeping what members owe across restarts. Default: in memory only.'),
  journal: options(
    {
      postgres: options(
        {
          connectionString: pinSource('The connection string').describe('A PostgreSQL connection string, { "env": "NAME" } or { "file": "path" } (its first line). Never printed.'),
          schema: z.string(must('a lower-case identifier')).regex(/^[a-z_][a-z0-9_]{0,62}$/, must('a lower-case identifier')).optional().describe('The schema holding the journal tables (created when missing). Default: pkcs11_ha.'),
          refreshIntervalMs: int(10, 3_600_000).optional().describe('How often this server reads what the others recorded and settled (ms). Default: 1000.'),
          claimTimeoutMs: int(100, 3_600_000)
            .optional()
            .describe('How long the right to repair a member outlives a server that stops answering PostgreSQL (frozen, cut off) before another server may take it (ms). Default: 30000.'),
        },
        '{ connectionString, schema?, refreshIntervalMs?, claimTimeoutMs? }',
      ),
    },
    '{ postgres }',
  )
    .optional()
    .describe('A journal shared by every application server (instead of journalPath): { postgres: { connectionString } }. Default: the file, or in memory only.'),
  transport: oneOf(['host', 'in-process']).optional().describe('Where members\' modules run. Default: host.'),
  deadlineMs: int(1, 3_600_000).optional().describe('A command with no answer (and no heartbeat) for this long fails its member (ms). Default: 20000.'),
  ceilingMs: int(1, 86_400_000).optional().describe('No command lives longer than this (ms); at least deadlineMs. Default: 120000.'),
  heartbeatIntervalMs: int(1, 1_200_000).optional().describe('Heartbeat interval of a member host (ms); at most a third of deadlineMs. Default: 1000.'),
  recovery: options(
    {
      intervalMs: int(1, 86_400_000).optional().describe('Time between a failure and the next attempt (ms). Default: 5000.'),
      maxAttempts: int(0, 1_000_000_000).optional().describe('Most automatic attempts per failure; 0 = off. Default: no limit.'),
    },
    'an object',
  ).optional(),
  demoteStandbys: z.boolean(must('a boolean')).optional().describe('Whether promoted standby members go back to standby when an active member serves again. Default: true.'),
  multipart: oneOf(['primary', 'least-busy']).optional().describe('Where multi-part operations run. Default: primary.'),
  multipartReplay: options(
    {
      operationBytes: int(0, 2 ** 32).optional().describe('Bytes one operation keeps for a replay (0 = off). Default: 1048576.'),
      groupBytes: int(0, 2 ** 40).optional().describe('Bytes all operations keep at once. Default: 4194304.'),
    },
    'an object',
  ).optional(),
  admin: options({ socket: nonEmpty('a non-empty path') }, '{ socket: <path> }').optional().describe('An admin endpoint for the pkcs11-ha CLI: a Unix socket, mode 0600. Default: none.'),
});

/** A group configuration's file options as `HaGroup.open` checks them: an unknown key's message names the code-only options among the known. */
export const groupFileSchema = options(groupFileShape('a Scheduler'), 'an object', CODE_ONLY_OPTIONS).meta({ $id: CONFIG_SCHEMA_ID, title: 'pkcs11-ha group configuration' });

/** A group configuration as a file holds it (and the shipped JSON schema): no code-only option is known. */
export const fileOnlyGroupSchema = options(groupFileShape(), 'an object').meta({ $id: CONFIG_SCHEMA_ID, title: 'pkcs11-ha group configuration' });

/**
 * Validates a configuration read from a file, before `resolveGroupConfig` fills it in: what
 * only code can give is refused (`<key>: code only, a file cannot hold it`), and an unknown
 * key's message names only what a file may hold.
 * @throws {@link ConfigError} naming the first bad value
 */
export function parseFileConfig(raw: unknown): z.output<typeof fileOnlyGroupSchema> {
  refuseCodeOnly(raw);
  return parseWith(fileOnlyGroupSchema, raw);
}

/**
 * Refuses what only code can give, found in a configuration read from a file: a
 * code-only option (even one whose value would pass, such as `"metrics": true`) or a
 * scheduler that is not a name.
 * @throws {@link ConfigError} `<key>: code only, a file cannot hold it`
 */
function refuseCodeOnly(raw: unknown): void {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return;
  const key = CODE_ONLY_OPTIONS.find((k) => Object.hasOwn(raw, k));
  if (key !== undefined) throw new ConfigError(key, 'code only, a file cannot hold it');
  const scheduler = (raw as { scheduler?: unknown }).scheduler;
  if (typeof scheduler === 'object' && scheduler !== null) throw new ConfigError('scheduler', "a Scheduler object is code only, a file cannot hold it (give 'least-busy' or 'peak-ewma')");
}

/** What zod infers a file config to be (group-config.ts checks its interfaces against it). */
export type InferredGroupFileConfig = z.input<typeof groupFileSchema>;
export type InferredMemberFileConfig = z.input<typeof memberFileSchema>;
export type InferredRemoteMemberFileConfig = z.input<typeof remoteMemberFileSchema>;

type Issue = z.core.$ZodIssue;

/** `['members', 1, 'role']` -> `members[1].role`, under `prefix`. */
function pathText(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out === '' ? 'config' : out;
}

/** The value at `path` inside `root`. */
function at(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const p of path) v = typeof v === 'object' && v !== null ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

/**
 * The issue to report for a union: the one of the branch that took the value's shape (its
 * issue lies deeper than the union), else the union's own.
 */
function deepest(issue: Issue): { issue: Issue; path: PropertyKey[] } {
  if (issue.code === 'invalid_union') {
    // Of the branches that took the value's shape, the one it missed by least (a local
    // member with a typo is told about the typo, not that it lacks a url).
    let branch: readonly Issue[] | undefined;
    for (const b of issue.errors) if (b.some((i) => i.path.length > 0) && (branch === undefined || b.length < branch.length)) branch = b;
    if (branch !== undefined) {
      const inner = deepest(first(branch));
      return { issue: inner.issue, path: [...issue.path, ...inner.path] };
    }
  }
  return { issue, path: [...issue.path] };
}

/** The issue to report of several: the first, or an unknown key in an object on its way (a typo, more likely than a missing option). */
function first(issues: readonly Issue[]): Issue {
  const head = issues[0]!;
  const within = (i: Issue) => i.path.length <= head.path.length && i.path.every((p, k) => p === head.path[k]);
  return issues.find((i) => i.code === 'unrecognized_keys' && within(i)) ?? head;
}

/** Values reported as a whole (a token selector, a module env), with what they must be: their parts make no sense alone. */
const WHOLE: Readonly<Record<string, string>> = { token: 'must be { label } or { serial } (one of them, non-empty)', env: 'must be a map of names to strings' };

/** The first zod issue as a ConfigError naming its path and echoing its value (a PIN's redacted). */
export function toConfigError(issue: Issue, root: unknown, prefix = ''): ConfigError {
  const deep = deepest(issue);
  const found = deep.issue;
  let path = deep.path;
  const whole = path.findIndex((p, i) => typeof p === 'string' && Object.hasOwn(WHOLE, p) && !(p === 'env' && SECRET_KEY.test(String(path[i - 1]))));
  let message = found.message;
  if (whole >= 0 && (whole < path.length - 1 || found.code === 'unrecognized_keys')) {
    path = path.slice(0, whole + 1);
    message = WHOLE[path[whole] as string]!;
  } else if (found.code === 'unrecognized_keys') return new ConfigError(pathText(prefix, [...path, found.keys[0]!]), message);
  const value = at(root, path);
  const secret = path.some((p) => typeof p === 'string' && SECRET_KEY.test(p));
  const got = secret ? `<redacted ${Array.isArray(value) ? 'array' : typeof value}>` : found.code === 'too_big' && Array.isArray(value) ? String(value.length) : show(value);
  return new ConfigError(pathText(prefix, path), `${message}, got ${got}`);
}

/**
 * Validates `raw` against `schema`.
 * @throws {@link ConfigError} naming the first bad value (`prefix` leads its path)
 */
export function parseWith<S extends z.ZodType>(schema: S, raw: unknown, prefix = ''): z.output<S> {
  const result = schema.safeParse(raw);
  if (!result.success) throw toConfigError(first(result.error.issues), raw, prefix);
  return result.data;
}

/** The JSON schema of a group configuration file, as `npm run schema` writes it. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(z.toJSONSchema(fileOnlyGroupSchema, { target: 'draft-2020-12', io: 'input' }), null, 2)}\n`;
}
