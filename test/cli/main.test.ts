/**
 * The `pkcs11-ha` CLI on groups opened from a config file, over real SoftHSM2 tokens:
 * every command, its exit code (0 healthy, 1 degraded, 2 bad usage or config), a one-line
 * reason with no stack trace, and never a PIN in what it prints.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';
import { noStack, run, spawnCli } from './run-cli.js';

let bed: Testbed;
/** The first two tokens (cli-1, cli-2), members of a host-transport group: the default. */
let config: string;
/** The same members in this process (faster) with a journal, for most commands. */
let fast: string;
const write = (name: string, value: unknown) => {
  const path = join(bed.dir, name);
  writeFileSync(path, typeof value === 'string' ? value : JSON.stringify(value));
  return path;
};
const pins = () => bed.tokens.flatMap((t) => [t.userPin, t.soPin]);
const printsNoPin = (...texts: string[]) => {
  for (const text of texts) for (const pin of pins()) expect(text).not.toContain(pin);
};

beforeAll(async () => {
  bed = await createTestbed({ count: 3, labelPrefix: 'cli' });
  const members = bed.memberConfigs().slice(0, 2);
  config = write('group.json', { members });
  fast = write('fast.json', { members, transport: 'in-process', journalPath: join(bed.dir, 'journal.json'), recovery: { maxAttempts: 0 } });
});
afterAll(async () => bed?.dispose());

describe('init, status, check and sync', () => {
  it('init gives both members one domain key; status shows it; no PIN is printed', async () => {
    const init = await run(['init', '--config', config]);
    expect(init.code).toBe(0);
    const result = JSON.parse(init.out) as { checkValue: string; created: boolean; joined: string[] };
    expect(result).toMatchObject({ created: true, joined: ['cli-2'] });
    const status = await run(['status', '-c', config]);
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.out) as { domain: string; members: { state: { kind: string } }[] };
    expect(parsed.domain).toBe(result.checkValue);
    expect(parsed.members.map((m) => m.state.kind)).toEqual(['active', 'active']);
    printsNoPin(init.out, init.err, status.out, status.err);
  });

  it('status: a table on a terminal, one JSON line per refresh with --watch --json', async () => {
    const table = await run(['status', '-c', fast], { tty: true });
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/^MEMBER\s+ROLE\s+STATE/m);
    expect(table.out).toMatch(/^cli-2\s+active\s+active/m);
    expect(table.out).toContain('healthy');
    const watch = await run(['status', '-c', fast, '--watch', '20', '--count', '2', '--json'], { tty: true });
    expect(watch.code).toBe(0);
    const lines = watch.out.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines.map((l) => (JSON.parse(l) as { members: unknown[] }).members.length)).toEqual([2, 2]);
  });

  it('check: one line and exit 0 when healthy; --json', async () => {
    const check = await run(['check', '-c', fast]);
    expect(check).toMatchObject({ code: 0, err: '' });
    expect(check.out).toBe('healthy: 2/2 members serve, primary cli-1\n');
    const json = await run(['check', '-c', fast, '--json']);
    expect(JSON.parse(json.out)).toEqual({ healthy: true, problems: [], primary: 'cli-1' });
  });

  it('sync settles what the journal says a member owes (check says degraded before, healthy after)', async () => {
    // An application ran with cli-2 down and made a key: cli-2 owes its replica.
    const app = await HaGroup.open(JSON.parse(readFileSync(fast, 'utf8')));
    const session = app.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
    internalsOf(app).members[1]!.fail('down for the test');
    await session.generateKey('AES_KEY_GEN', { label: 'cli-owed', token: true, valueLen: 32, encrypt: true, decrypt: true });
    expect(app.status().owed).toEqual({ 'cli-2': 1 });
    await app.close();

    const before = await run(['check', '-c', fast]);
    expect(before.code).toBe(1);
    expect(before.out).toContain('cli-2 owes 1 item');
    const sync = await run(['sync', '-c', fast], { errTty: true });
    expect(sync.code).toBe(0);
    // The progress bar, on a terminal's stderr.
    expect(sync.err).toMatch(/cli-2 \[.*\] 1\/1/);
    expect((JSON.parse(sync.out) as { owed: object }).owed).toEqual({});
    expect((await run(['check', '-c', fast])).code).toBe(0);
    printsNoPin(sync.out, sync.err);
  });

  it('sync needs a userPin to log in: without one it is a config error', async () => {
    const pinless = write('pinless.json', { members: bed.memberConfigs().slice(0, 2).map(({ userPin: _omit, ...m }) => m), transport: 'in-process' });
    const noPin = await run(['sync', '-c', pinless]);
    expect(noPin.code).toBe(2);
    expect(noPin.err).toContain('userPin');
  });
});

describe('steering a group opened from the config', () => {
  it('recover <member>: 0 when it serves; an unknown member is a usage error', async () => {
    expect(await run(['recover', 'cli-1', '-c', fast])).toMatchObject({ code: 0, out: 'cli-1 serves\n' });
    const unknown = await run(['recover', 'nobody', '-c', fast]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toBe('pkcs11-ha recover: ERR_INVALID_ARGUMENT: no member named "nobody"\n');
  });

  it('standby <member> on|off and remove-member', async () => {
    expect(await run(['standby', 'cli-2', 'on', '-c', fast])).toMatchObject({ code: 0, out: 'cli-2: role standby, state standby\n' });
    expect(await run(['standby', 'cli-2', 'off', '-c', fast])).toMatchObject({ code: 0, out: 'cli-2: role active, state active\n' });
    expect((await run(['standby', 'cli-2', 'maybe', '-c', fast])).code).toBe(2);
    expect(await run(['remove-member', 'cli-2', '-c', fast])).toMatchObject({ code: 0, out: 'cli-2 removed\n' });
  });

  it('add-member: a token without the domain key is refused (1); bad member options are usage errors (2)', async () => {
    const t = bed.tokens[2]!;
    const refused = await run(['add-member', '-c', fast, '--module', t.modulePath, '--module-env', `SOFTHSM2_CONF=${t.confPath}`, '--label', t.label]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^pkcs11-ha add-member: ERR_MEMBER_UNREACHABLE: member cli-3: could not join: .*it has no domain key\n$/);
    expect((await run(['add-member', '-c', fast, '--label', 'x'])).code).toBe(2);
    expect((await run(['add-member', '-c', fast, '--module', 'm', '--module-env', 'novalue', '--label', 'x'])).code).toBe(2);
    const pin = await run(['add-member', '-c', fast, '--member', JSON.stringify({ module: t.modulePath, token: { label: t.label }, userPin: t.userPin })]);
    expect(pin.code).toBe(2);
    expect(pin.err).toContain('takes no PIN');
    printsNoPin(refused.out, refused.err, pin.err);
  });
});

describe('bad command lines and bad configs', () => {
  const good = () => bed.memberConfigs()[0]!;
  it.each([
    { what: 'not JSON', file: () => '{ "members": [{ "soPin": so-secret-4711 }] }', code: 2, err: /ERR_CONFIG: .*leaky\.json is not valid JSON/ },
    { what: 'wrong types', file: () => ({ members: [good()], deadlineMs: 'fast' }), code: 2, err: /ERR_CONFIG: .*leaky\.json: deadlineMs: must be an integer/ },
    // The hint names what a file may hold, not the options only code can give.
    { what: 'an unknown option', file: () => ({ members: [good()], colour: 'blue' }), code: 2, err: /ERR_CONFIG: .*colour: unknown option \(known: \$schema, members, (?!.*\b(?:clock|transportFactory|metrics|logger|on)\b)/ },
    { what: 'metrics, an option only code can give', file: () => ({ members: [good()], metrics: true }), code: 2, err: /^pkcs11-ha (?:check|status): ERR_CONFIG: .*leaky\.json: metrics: code only, a file cannot hold it$/ },
    { what: 'listeners (on), an option only code can give', file: () => ({ members: [good()], on: {} }), code: 2, err: /ERR_CONFIG: .*leaky\.json: on: code only, a file cannot hold it$/ },
    { what: 'a clock, an option only code can give', file: () => ({ members: [good()], clock: { now: 1 } }), code: 2, err: /ERR_CONFIG: .*leaky\.json: clock: code only, a file cannot hold it$/ },
    { what: 'a logger, an option only code can give', file: () => ({ members: [good()], logger: {} }), code: 2, err: /ERR_CONFIG: .*leaky\.json: logger: code only, a file cannot hold it$/ },
    { what: 'a Scheduler object', file: () => ({ members: [good()], scheduler: { pick: 'x' } }), code: 2, err: /ERR_CONFIG: .*leaky\.json: scheduler: a Scheduler object is code only, a file cannot hold it/ },
    { what: 'a missing module path', file: () => ({ members: [good(), { name: 'gone', module: '/nonexistent/libnone.so', token: { label: 'x' } }], transport: 'in-process' }), code: 1, out: /gone failed: .*module file not found/ },
    { what: 'a wrong token label', file: () => ({ members: [good(), { ...good(), name: 'wrong', token: { label: 'no-such-token' } }], transport: 'in-process' }), code: 1, out: /wrong failed: .*no-such-token/ },
    { what: 'only members whose module is missing', file: () => ({ members: [{ module: '/nonexistent.so', token: { label: 'x' } }] }), code: 2, err: /ERR_CONFIG: members\[0\]\.module: module file not found/ },
  ])('$what: status and check exit $code with one line that says why, and no PIN', async ({ file, code, err, out }) => {
    const path = write('leaky.json', file());
    for (const command of ['status', 'check']) {
      const r = await run([command, '-c', path]);
      expect(r.code, command).toBe(code);
      if (err) {
        expect(r.err.trim().split('\n'), command).toHaveLength(1);
        expect(r.err.trimEnd(), command).toMatch(err);
        expect(r.out, command).toBe('');
      }
      // check says why in its line; status prints the status, the failed member's reason in it.
      const said = () => (JSON.parse(r.out) as { members: { name: string; state: { kind: string; reason?: string } }[] }).members.map((m) => `${m.name} ${m.state.kind}: ${m.state.reason ?? ''}`).join('\n');
      if (out) expect(command === 'check' ? r.out : said(), command).toMatch(out);
      expect(r.err + r.out).not.toContain('4711');
      printsNoPin(r.out, r.err);
    }
  });

  it.each([
    { args: [], err: /Usage: pkcs11-ha/ },
    { args: ['frobnicate'], err: /unknown command 'frobnicate'/ },
    { args: ['status'], err: /give either --config <group\.json> .* or --connect <socket>/ },
    { args: ['status', '-c', 'a.json', '--connect', 'b.sock'], err: /give either --config/ },
    { args: ['status', '--watch', '0', '-c', 'a.json'], err: /--watch must be a positive integer/ },
    { args: ['init', '--connect', 'b.sock'], err: /init needs --config/ },
    { args: ['recover', '-c', 'a.json'], err: /missing required argument 'member'/ },
  ])('$args: exit 2', async ({ args, err }) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(err);
  });

  it('an unknown flag, as a user meets it: exit 2, one line, no stack trace', async () => {
    const r = await spawnCli(['status', '--frobnicate', '-c', config]);
    expect(r).toMatchObject({ code: 2, out: '', err: "pkcs11-ha: unknown option '--frobnicate'\n" });
    expect(noStack(r.err)).toBe(true);
  });

  it("a near miss: commander's suggestion stays on the one line", async () => {
    expect(await run(['status', '--jsn', '-c', config])).toEqual({ code: 2, out: '', err: "pkcs11-ha: unknown option '--jsn' (Did you mean --json?)\n" });
    expect(await run(['stats', '-c', config])).toEqual({ code: 2, out: '', err: "pkcs11-ha: unknown command 'stats' (Did you mean status?)\n" });
  });
});

describe('version, help, demo and bench', () => {
  it('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(await run(['--version'])).toMatchObject({ code: 0, out: `${version}\n` });
  });

  it.each(['init', 'status', 'check', 'sync', 'recover', 'standby', 'add-member', 'remove-member', 'demo', 'bench'])('%s --help tells its usage and the exit codes', async (command) => {
    const r = await run([command, '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`Usage: pkcs11-ha ${command}`);
    expect(r.out).toContain('Exit codes: 0 healthy, 1 degraded');
  });

  it('demo and bench run the npm scripts of the clone (--dry-run shows the command)', async () => {
    expect((await run(['demo', '--dry-run'])).out).toMatch(/ && npm run demo\n$/);
    expect((await run(['bench', '--dry-run', '--', '--quick'])).out).toMatch(/ && npm run bench -- --quick\n$/);
  });
});
