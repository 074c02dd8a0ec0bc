/**
 * resolveGroupConfig: each bad value is refused with a ConfigError that names its path
 * and echoes it; defaults are filled in; PINs never show, in errors or in the result.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock/clock.js';
import { ConfigError, HaError } from '../../src/errors/ha-error.js';
import { resolveGroupConfig, type GroupConfig } from '../../src/group/group-config.js';
import { Secret } from '../../src/member/secret.js';
import { LeastBusyScheduler } from '../../src/routing/least-busy-scheduler.js';
import { FakeClock } from '../helpers/fake-clock.js';

const PIN = '98765432';
const SO_PIN = '24681357';

/** A valid two-member config, as plain data a test can break in one place. */
function valid(): Record<string, any> {
  return {
    members: [
      { module: '/opt/hsm/libsofthsm2.so', token: { label: 'hsm-a' }, userPin: PIN, soPin: SO_PIN },
      { module: { path: '/opt/hsm/copy/libsofthsm2.so', env: { SOFTHSM2_CONF: '/etc/b.conf' } }, token: { serial: '5c1f9a0e22b04d1a' }, userPin: PIN, role: 'standby' },
    ],
  };
}

/** Resolves `config` and returns the ConfigError it must throw. */
function refusal(config: unknown): ConfigError {
  let thrown: unknown;
  try {
    resolveGroupConfig(config as GroupConfig);
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'resolveGroupConfig accepted a bad config').toBeInstanceOf(ConfigError);
  expect(HaError.is(thrown)).toBe(true);
  expect((thrown as ConfigError).code).toBe('ERR_CONFIG');
  return thrown as ConfigError;
}

/** `valid()` with one change made by `edit`. */
function broken(edit: (c: Record<string, any>) => void): Record<string, any> {
  const c = valid();
  edit(c);
  return c;
}

describe('resolveGroupConfig refuses bad values, naming the path and echoing the value', () => {
  type Row = { what: string; config: unknown; path: string; echo: string };
  const rows: Row[] = [
    { what: 'config null', config: null, path: 'config', echo: 'null' },
    { what: 'an unknown top-level option', config: broken((c) => (c.threads = 4)), path: 'threads', echo: 'unknown option' },
    { what: 'members missing', config: {}, path: 'members', echo: 'undefined' },
    { what: 'members empty', config: { members: [] }, path: 'members', echo: '[]' },
    { what: '65 members', config: { members: Array.from({ length: 65 }, (_, i) => ({ module: '/m.so', token: { label: `t${i}` } })) }, path: 'members', echo: '65' },
    { what: 'a member that is a string', config: broken((c) => (c.members[1] = 'hsm-b')), path: 'members[1]', echo: '"hsm-b"' },
    { what: 'an unknown member option', config: broken((c) => (c.members[1].lable = 'x')), path: 'members[1].lable', echo: 'unknown option' },
    { what: 'module a number', config: broken((c) => (c.members[0].module = 42)), path: 'members[0].module', echo: '42' },
    { what: 'module missing', config: broken((c) => delete c.members[1].module), path: 'members[1].module', echo: 'undefined' },
    { what: 'module path empty', config: broken((c) => (c.members[0].module = { path: '' })), path: 'members[0].module.path', echo: '""' },
    { what: 'module env with a number', config: broken((c) => (c.members[1].module.env = { SOFTHSM2_CONF: 7 })), path: 'members[1].module.env', echo: '{"SOFTHSM2_CONF":7}' },
    { what: 'module env null', config: broken((c) => (c.members[1].module.env = null)), path: 'members[1].module.env', echo: 'null' },
    { what: 'token empty', config: broken((c) => (c.members[1].token = {})), path: 'members[1].token', echo: '{}' },
    { what: 'token with label and serial', config: broken((c) => (c.members[1].token = { label: 'a', serial: 'b' })), path: 'members[1].token', echo: '{"label":"a","serial":"b"}' },
    { what: 'token label empty', config: broken((c) => (c.members[0].token = { label: '' })), path: 'members[0].token', echo: '{"label":""}' },
    { what: 'token a string', config: broken((c) => (c.members[0].token = 'hsm-a')), path: 'members[0].token', echo: '"hsm-a"' },
    { what: 'token missing', config: broken((c) => delete c.members[1].token), path: 'members[1].token', echo: 'undefined' },
    { what: 'role unknown', config: broken((c) => (c.members[1].role = 'primary')), path: 'members[1].role', echo: '"primary"' },
    { what: 'name empty', config: broken((c) => (c.members[0].name = '')), path: 'members[0].name', echo: '""' },
    { what: 'name a number', config: broken((c) => (c.members[1].name = 7)), path: 'members[1].name', echo: '7' },
    { what: 'a name used twice (one defaulted from the label)', config: broken((c) => (c.members[1].name = 'hsm-a')), path: 'members[1].name', echo: '"hsm-a"' },
    { what: 'threadsPerMember 0', config: broken((c) => (c.threadsPerMember = 0)), path: 'threadsPerMember', echo: '0' },
    { what: 'threadsPerMember 2.5', config: broken((c) => (c.threadsPerMember = 2.5)), path: 'threadsPerMember', echo: '2.5' },
    { what: 'threadsPerMember a string', config: broken((c) => (c.threadsPerMember = '4')), path: 'threadsPerMember', echo: '"4"' },
    { what: 'threadsPerMember 65', config: broken((c) => (c.threadsPerMember = 65)), path: 'threadsPerMember', echo: '65' },
    { what: 'maxSessionsPerMember 0', config: broken((c) => (c.maxSessionsPerMember = 0)), path: 'maxSessionsPerMember', echo: '0' },
    { what: 'maxSessionsPerMember 4097', config: broken((c) => (c.maxSessionsPerMember = 4097)), path: 'maxSessionsPerMember', echo: '4097' },
    { what: 'transportFactory a string', config: broken((c) => (c.transportFactory = 'in-process')), path: 'transportFactory', echo: '"in-process"' },
    { what: 'keyCreation unknown', config: broken((c) => (c.keyCreation = 'staged')), path: 'keyCreation', echo: '"staged"' },
    { what: 'hostCalls unknown', config: broken((c) => (c.hostCalls = 'sync')), path: 'hostCalls', echo: '"sync"' },
    { what: 'inProcessCalls unknown', config: broken((c) => (c.inProcessCalls = 'main')), path: 'inProcessCalls', echo: '"main"' },
  ];

  it.each(rows)('$what -> $path', ({ config, path, echo }) => {
    const error = refusal(config);
    expect(error.path).toBe(path);
    expect(error.message.startsWith(`${path}: `)).toBe(true);
    expect(error.message).toContain(echo);
  });

  // These name the path but say only what is missing (they do not echo the value; see report).
  it.each([
    { what: 'scheduler without pick', config: broken((c) => (c.scheduler = { name: 'x' })), path: 'scheduler' },
    { what: 'clock without setTimeout', config: broken((c) => (c.clock = { now: () => 0, clearTimeout: () => undefined })), path: 'clock' },
  ])('$what -> $path', ({ config, path }) => {
    expect(refusal(config).path).toBe(path);
  });

  it('names the first bad member, not a later one', () => {
    const c = broken((x) => {
      x.members[0].role = 'leader';
      x.members[1].token = {};
    });
    expect(refusal(c).path).toBe('members[0].role');
  });
});

describe('resolveGroupConfig defaults', () => {
  it('fills in threads, sessions, role, names, env, scheduler and clock', () => {
    const r = resolveGroupConfig(valid() as GroupConfig);
    expect(r.maxSessionsPerMember).toBe(32);
    expect(r.scheduler).toBeInstanceOf(LeastBusyScheduler);
    expect(r.scheduler.name).toBe('least-busy');
    expect(r.clock).toBe(systemClock);
    expect(r.transportFactory).toBeUndefined();
    expect(r.keyCreation).toBe('parallel');
    expect(r.hostCalls).toBe('inline');
    expect(r.inProcessCalls).toBe('inline');
    const [a, b] = r.members;
    expect(a).toMatchObject({ name: 'hsm-a', index: 0, path: 'members[0]', role: 'active', threads: 2, modulePath: '/opt/hsm/libsofthsm2.so', moduleEnv: {}, token: { label: 'hsm-a' } });
    expect(b).toMatchObject({ name: '5c1f9a0e22b04d1a', index: 1, path: 'members[1]', role: 'standby', threads: 2, moduleEnv: { SOFTHSM2_CONF: '/etc/b.conf' }, token: { serial: '5c1f9a0e22b04d1a' } });
    expect(a!.userPin).toBeInstanceOf(Secret);
    expect(a!.userPin!.reveal()).toBe(PIN);
    expect(a!.soPin!.reveal()).toBe(SO_PIN);
    expect(b!.soPin).toBeUndefined();
  });

  it('keeps what is given: names, threads, sessions, clock, factory', () => {
    const clock = new FakeClock();
    const transportFactory = () => {
      throw new Error('not called by resolve');
    };
    const r = resolveGroupConfig({
      ...(valid() as GroupConfig),
      members: [{ name: 'left', module: '/m.so', token: { label: 'hsm-a' } }, { name: 'right', module: '/m.so', token: { label: 'hsm-a' } }],
      threadsPerMember: 5,
      maxSessionsPerMember: 4096,
      clock,
      transportFactory,
    });
    expect(r.members.map((m) => [m.name, m.threads])).toEqual([['left', 5], ['right', 5]]);
    expect(r.maxSessionsPerMember).toBe(4096);
    expect(r.clock).toBe(clock);
    expect(r.transportFactory).toBe(transportFactory);
  });

  it('gives each group its own default scheduler (its round-robin turn is state)', () => {
    const a = resolveGroupConfig(valid() as GroupConfig).scheduler;
    const b = resolveGroupConfig(valid() as GroupConfig).scheduler;
    expect(a).not.toBe(b);
  });
});

describe('PINs never show', () => {
  type Row = { what: string; config: unknown; path: string };
  /** Configs that are refused while a PIN sits in or next to the bad value. */
  const rows: Row[] = [
    { what: 'userPin a number', config: broken((c) => (c.members[0].userPin = Number(PIN))), path: 'members[0].userPin' },
    { what: 'soPin an array', config: broken((c) => (c.members[0].soPin = [PIN])), path: 'members[0].soPin' },
    { what: 'soPin empty beside a good userPin', config: broken((c) => (c.members[1].soPin = '')), path: 'members[1].soPin' },
    { what: 'PIN under an unknown key', config: broken((c) => (c.members[0].pin = PIN)), path: 'members[0].pin' },
    { what: 'bad token in a member with PINs', config: broken((c) => (c.members[0].token = { label: 'hsm-a', serial: 'x' })), path: 'members[0].token' },
    { what: 'bad module in a member with PINs', config: broken((c) => (c.members[0].module = { path: 5 })), path: 'members[0].module.path' },
    { what: 'bad role in a member with PINs', config: broken((c) => (c.members[1].role = 'spare')), path: 'members[1].role' },
    { what: 'duplicate name in members with PINs', config: broken((c) => (c.members[1].name = 'hsm-a')), path: 'members[1].name' },
    { what: 'bad option next to members with PINs', config: broken((c) => (c.maxSessionsPerMember = -1)), path: 'maxSessionsPerMember' },
  ];

  it.each(rows)('$what', ({ config, path }) => {
    const error = refusal(config);
    expect(error.path).toBe(path);
    expect(error.message).not.toContain(PIN);
    expect(error.message).not.toContain(SO_PIN);
    expect(inspect(error)).not.toContain(PIN);
  });

  // These echo the whole bad value, which holds a member with its PIN: redacted by key.
  it.each([
    { what: 'members given as one object instead of an array', config: { members: valid().members[0] }, path: 'members' },
    { what: 'a member wrapped in an array', config: broken((c) => (c.members[0] = [c.members[0]])), path: 'members[0]' },
    { what: 'the whole config wrapped in an array', config: [valid()], path: 'config' },
    { what: 'a PIN given as the token selector', config: broken((c) => (c.members[0].token = { pin: PIN })), path: 'members[0].token' },
  ] as Row[])('$what', ({ config, path }) => {
    const error = refusal(config);
    expect(error.path).toBe(path);
    expect(error.message).not.toContain(PIN);
  });

  it('a resolved config shows no PIN in JSON, util.inspect or a template string', () => {
    const r = resolveGroupConfig(valid() as GroupConfig);
    for (const text of [JSON.stringify(r), inspect(r, { depth: 10 }), `${r.members[0]!.userPin}`, JSON.stringify(r.members), String(r.members[0]!.soPin)]) {
      expect(text).not.toContain(PIN);
      expect(text).not.toContain(SO_PIN);
    }
    // The PINs are still there for the module.
    expect(JSON.stringify(r.members[0])).toContain('<redacted>');
    expect(r.members.map((m) => m.userPin?.reveal())).toEqual([PIN, PIN]);
  });
});

describe('multi-part options', () => {
  it('default to the primary and a replay bound of 1 MiB per operation, 4 MiB per group', () => {
    const resolved = resolveGroupConfig(valid() as GroupConfig);
    expect(resolved.multipart).toBe('primary');
    expect(resolved.multipartReplay).toEqual({ operationBytes: 1024 * 1024, groupBytes: 4 * 1024 * 1024 });
    expect(resolveGroupConfig({ ...valid(), multipart: 'least-busy', multipartReplay: { operationBytes: 0 } } as GroupConfig)).toMatchObject({
      multipart: 'least-busy',
      multipartReplay: { operationBytes: 0, groupBytes: 4 * 1024 * 1024 },
    });
  });

  it.each([
    [{ multipart: 'round-robin' }, 'multipart', '"round-robin"'],
    [{ multipartReplay: 5 }, 'multipartReplay', '5'],
    [{ multipartReplay: { operationBytes: -1 } }, 'multipartReplay.operationBytes', '-1'],
    [{ multipartReplay: { groupBytes: 1.5 } }, 'multipartReplay.groupBytes', '1.5'],
    [{ multipartReplay: { bytes: 1 } }, 'multipartReplay.bytes', 'unknown option'],
  ])('refuses %j at %s, echoing %s', (bad, path, echo) => {
    const error = refusal({ ...valid(), ...bad });
    expect(error.path).toBe(path);
    expect(error.message).toContain(echo);
  });
});
