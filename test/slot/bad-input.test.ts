/**
 * Bad input through the public API, property-based (fast-check), on a group of three real
 * member hosts: random templates, mechanisms, parameters, handles, data sizes (0 bytes to
 * several MiB), PINs and call orders give typed errors only (an HaError with a stable code;
 * a Pkcs11Error from a token names its C_ function and is never a member fault), never a
 * crash, never a failed member, never a hang.
 *
 * Fixed seed in CI. Run longer with FC_RUNS (runs of every property) and another FC_SEED:
 *
 *   FC_RUNS=2000 FC_SEED=7 npx vitest run test/slot/bad-input.test.ts
 *
 * (test/helpers/fuzz-settings.ts; a failure prints the seed and path that replay it).
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  HaError,
  HaGroup,
  PARAMETER_SHAPES,
  Pkcs11Error,
  type HaErrorCode,
  type MechanismInput,
  type ObjectHandle,
  type TemplateInput,
  type VirtualSession,
} from '../../src/index.js';
import { ATTRIBUTE_FIELDS } from '../../src/pkcs11/attribute-table.js';
import { standardKeys } from '../../src/testbed/provision.js';
import { fuzzParameters, fuzzRuns, longRun } from '../helpers/fuzz-settings.js';
import { hostGroups } from '../helpers/host-groups.js';

const KEYS = standardKeys('bad');
const fixture = hostGroups(KEYS, { initDomain: true });

/** Codes that bad input may give: the caller's mistake, told apart from any member trouble. */
const CALLER_CODES: ReadonlySet<HaErrorCode> = new Set(['ERR_INVALID_ARGUMENT', 'ERR_INVALID_HANDLE', 'ERR_PKCS11', 'ERR_REPLICATION']);
/** Longest one call may take before it counts as a hang (well under the test's limit). */
const CALL_LIMIT_MS = 20_000;
/** Time limit of a property test: generous for FC_RUNS runs. */
const TEST_LIMIT_MS = longRun ? 3_600_000 : 60_000;

/** A value of any JavaScript type, including the awkward ones (bigint, null prototype, typed arrays, sparse arrays). */
const anything = fc.anything({ withBigInt: true, withNullPrototype: true, withTypedArray: true, withMap: true, withSet: true, withBoxedValues: true, withSparseArray: true, withDate: true, maxDepth: 2 });
const bytes = (maxLength = 64) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));

const MECHANISM_NAMES = [
  ...Object.keys(PARAMETER_SHAPES),
  'AES_KEY_GEN', 'AES_ECB', 'AES_CMAC', 'SHA256', 'SHA_1', 'SHA512', 'SHA256_HMAC', 'ECDSA', 'EC_KEY_PAIR_GEN', 'RSA_PKCS',
  'SHA256_RSA_PKCS', 'RSA_PKCS_KEY_PAIR_GEN', 'GENERIC_SECRET_KEY_GEN', 'RSA_X_509', 'EDDSA', 'aes_gcm', 'NOT_A_MECHANISM', '',
];
const ATTRIBUTE_NAMES = ATTRIBUTE_FIELDS.map((f) => f.name);

/** Mechanisms: names with or without their parameters, numbers, pkcs11js objects, garbage. */
const mechanism: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(...MECHANISM_NAMES),
  fc.record(
    {
      name: fc.constantFrom(...MECHANISM_NAMES),
      iv: fc.oneof(bytes(32), anything),
      aad: fc.oneof(bytes(32), anything),
      tagBits: fc.oneof(fc.integer({ min: -8, max: 256 }), anything),
      hash: fc.oneof(fc.constantFrom('SHA_1', 'SHA256', 'SHA512', 'MD5'), anything),
      mgf: fc.oneof(fc.constantFrom('MGF1_SHA1', 'MGF1_SHA256'), anything),
      saltLen: fc.oneof(fc.integer({ min: -1, max: 600 }), anything),
      label: anything,
      counterBits: anything,
      macLength: anything,
      parameter: anything,
    },
    { requiredKeys: ['name'] },
  ),
  fc.record({ mechanism: fc.oneof(fc.nat({ max: 0xffff_ffff }), anything), parameter: fc.oneof(bytes(48), anything) }, { requiredKeys: ['mechanism'] }),
  fc.nat({ max: 0x1_0000_1000 }),
  anything,
);

/** Templates: friendly objects with any values under real and made-up names, raw arrays, garbage. */
const template: fc.Arbitrary<unknown> = fc.oneof(
  fc.dictionary(fc.oneof(fc.constantFrom(...ATTRIBUTE_NAMES), fc.string({ maxLength: 12 })), fc.oneof(fc.boolean(), fc.nat(), bytes(40), fc.string({ maxLength: 12 }), anything), { maxKeys: 6 }),
  fc.array(fc.record({ type: fc.oneof(fc.nat({ max: 0x1_0000_0000 }), anything), value: fc.oneof(fc.boolean(), fc.nat(), bytes(40), anything) }, { requiredKeys: [] }), { maxLength: 5 }),
  anything,
);

/** Data: bytes of small sizes, views, and non-bytes. */
const data: fc.Arbitrary<unknown> = fc.oneof(bytes(300), fc.uint8Array({ maxLength: 64 }), fc.constantFrom(Buffer.alloc(0), new Uint16Array(3), new ArrayBuffer(8), 'text'), anything);

/** A call of the public session API with generated arguments; `key` picks one of the real handles or a made-up one. */
type Call = { readonly method: string; readonly args: readonly unknown[] };

function callArbitrary(handle: fc.Arbitrary<unknown>): fc.Arbitrary<Call> {
  const call = (method: string, ...args: fc.Arbitrary<unknown>[]): fc.Arbitrary<Call> => fc.tuple(...args).map((a) => ({ method, args: a }));
  return fc.oneof(
    call('encrypt', mechanism, handle, data),
    call('decrypt', mechanism, handle, data),
    call('sign', mechanism, handle, data),
    call('verify', mechanism, handle, data, data),
    call('digest', mechanism, data),
    call('generateRandom', fc.oneof(fc.integer({ min: -2, max: 2 << 20 }), anything)),
    call('findObjects', template),
    call('getAttributes', handle, fc.oneof(fc.array(fc.constantFrom(...ATTRIBUTE_NAMES), { maxLength: 4 }), fc.constant(null), fc.constant('label'), anything)),
    call('getAttributeValues', handle, fc.oneof(fc.array(fc.nat({ max: 0x1_0000_0000 }), { maxLength: 4 }), anything)),
    call('generateKey', mechanism, template),
    call('generateKeyPair', mechanism, template, template),
    call('createObject', template),
    call('copyObject', handle, template),
    call('setAttributes', handle, template),
    call('wrapKey', mechanism, handle, handle),
    call('unwrapKey', mechanism, handle, data, template),
    call('deriveKey', mechanism, handle, template),
    call('encryptInit', mechanism, handle),
    call('encryptUpdate', data),
    call('encryptFinal'),
    call('decryptInit', mechanism, handle),
    call('decryptUpdate', data),
    call('decryptFinal'),
    call('signInit', mechanism, handle),
    call('signUpdate', data),
    call('signFinal'),
    call('verifyInit', mechanism, handle),
    call('verifyUpdate', data),
    call('verifyFinal', data),
    call('digestInit', mechanism),
    call('digestUpdate', data),
    call('digestKey', handle),
    call('digestFinal'),
    call('login', fc.oneof(fc.string({ maxLength: 8 }), anything), fc.oneof(fc.constantFrom('user', 'so', 'nobody', 1, 2, -1), anything)),
  );
}

/** A short text of a call for messages: types and sizes, not contents. */
function describeCall(call: Call): string {
  const show = (v: unknown): string => (v instanceof Uint8Array ? `<${v.length} bytes>` : typeof v === 'bigint' ? `${v}n` : typeof v === 'symbol' ? 'symbol' : (safeJson(v) ?? typeof v).slice(0, 200));
  return `${call.method}(${call.args.map(show).join(', ')})`;
}

function safeJson(v: unknown): string | undefined {
  try {
    return JSON.stringify(v);
  } catch {
    return undefined;
  }
}

/** Rejects when `work` has not settled after CALL_LIMIT_MS: a hang. */
async function bounded<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: ${what} did not settle in ${CALL_LIMIT_MS} ms`)), CALL_LIMIT_MS);
  });
  try {
    return await Promise.race([work, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** Fails unless `error` is a typed error a caller's bad input may give. */
function expectTyped(error: unknown, what: string): void {
  if (!HaError.is(error)) throw new Error(`${what} threw an untyped ${(error as Error)?.name ?? typeof error}: ${(error as Error)?.message ?? String(error)}`);
  if (!CALLER_CODES.has(error.code)) throw new Error(`${what} threw ${error.code}: ${error.message}`);
  if (error instanceof Pkcs11Error) {
    if (!/^C_[A-Z][A-Za-z]+$/.test(error.fn)) throw new Error(`${what}: Pkcs11Error.fn is ${JSON.stringify(error.fn)}, not a C_ function`);
    if (error.fault === 'member') throw new Error(`${what}: ${error.ckr} classified as a member fault`);
  }
}

/** Every member still serves (none failed over bad input). */
function expectAllServing(group: HaGroup, what: string): void {
  const states = group.status().members.map((m) => `${m.name}:${m.state.kind}`);
  if (states.some((s) => !s.endsWith(':active'))) throw new Error(`after ${what}: members ${states.join(', ')}`);
}

interface Opened {
  readonly group: HaGroup;
  readonly session: VirtualSession;
  readonly pin: string;
  /** The group's real objects: the standard keys and their public halves. */
  readonly handles: readonly ObjectHandle[];
}

let shared: Opened | undefined;

/** The file's group (opened once: starting three hosts takes seconds on a busy machine), logged in. */
async function openGroup(): Promise<Opened> {
  if (shared === undefined) {
    const bed = fixture.bed;
    // No background recovery: a member failed by a call stays failed and is seen.
    const group = await HaGroup.open({ members: bed.memberConfigs(), recovery: { maxAttempts: 0 }, deadlineMs: 10_000 });
    const session = group.slot.openSession();
    const pin = bed.tokens[0]!.userPin;
    await session.login(pin);
    const handles = (await Promise.all(KEYS.map((k) => session.findObjects({ label: k.label })))).flat();
    expect(handles.length).toBe(6);
    shared = { group, session, pin, handles };
  }
  expectAllServing(shared.group, 'the previous test');
  return shared;
}

afterAll(async () => {
  await shared?.group.close();
});

/** Runs one generated call; objects it made are destroyed after. Resolves to the outcome's code. */
async function runCall(opened: Opened, session: VirtualSession, call: Call): Promise<string> {
  const what = describeCall(call);
  const closed = !session.open;
  const method = (session as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[call.method]!;
  let result: unknown;
  try {
    result = await bounded(Promise.resolve().then(() => method.apply(session, call.args as unknown[])), what);
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('hang:')) throw error;
    // A closed session refuses everything as closed; an open one never says so.
    if (closed && HaError.is(error) && error.code === 'ERR_CLOSED') return error.code;
    expectTyped(error, what);
    expectAllServing(opened.group, what);
    return (error as HaError).code;
  }
  // Whatever a generated call created goes again, so the tokens stay small.
  const made = typeof result === 'number' ? [result] : result && typeof result === 'object' && 'privateKey' in result ? Object.values(result as object) : [];
  if (['generateKey', 'generateKeyPair', 'createObject', 'copyObject', 'unwrapKey', 'deriveKey'].includes(call.method)) {
    for (const h of made) await session.destroyObject(h as number);
  }
  expectAllServing(opened.group, what);
  return 'ok';
}

describe('bad input through the public API (3 member hosts, property-based)', () => {
  it(
    'random single calls (templates, mechanisms, parameters, handles, data) give typed errors only and fail no member',
    async () => {
      const opened = await openGroup();
      const handle = fc.oneof(fc.constantFrom(...opened.handles), fc.integer({ min: -5, max: 1_000_000 }), anything);
      const outcomes = new Map<string, number>();
      await fc.assert(
        fc.asyncProperty(callArbitrary(handle), async (call) => {
          const code = await runCall(opened, opened.session, call);
          outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
          // A generated login may have logged in already; a logout is a call order of its own (below).
        }),
        fuzzParameters(600),
      );
      // The runs reached the tokens, not just the argument checks.
      expect(outcomes.get('ERR_INVALID_ARGUMENT')).toBeGreaterThan(0);
      expect(outcomes.get('ERR_PKCS11') ?? 0).toBeGreaterThan(0);
      expect(outcomes.get('ok') ?? 0).toBeGreaterThan(0);
    },
    TEST_LIMIT_MS,
  );

  it(
    'random call orders (multi-part steps out of order, logout and login in between, a closed session) give typed errors only',
    async () => {
      const opened = await openGroup();
      const handle = fc.oneof(fc.constantFrom(...opened.handles), fc.integer({ min: 0, max: 50 }));
      const step = fc.oneof(
        { weight: 8, arbitrary: callArbitrary(handle) },
        { weight: 1, arbitrary: fc.constant<Call>({ method: 'logout', args: [] }) },
        { weight: 1, arbitrary: fc.constant<Call>({ method: 'login', args: [opened.pin] }) },
        { weight: 1, arbitrary: fc.constant<Call>({ method: 'close', args: [] }) },
      );
      const outcomes = new Map<string, number>();
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps) => {
          const session = opened.group.slot.openSession();
          try {
            for (const s of steps) {
              const code = await runCall(opened, session, s);
              outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
              // After close every call is refused: as closed, or as malformed before that is looked at.
              if (s.method === 'close') expect(code).toBe('ok');
              else if (!session.open) expect(code).toMatch(/^(ERR_CLOSED|ERR_INVALID_ARGUMENT)$/);
            }
          } finally {
            await session.close();
            // The next run starts logged in, as the application would.
            await opened.session.login(opened.pin).catch((e: unknown) => expect(e).toMatchObject({ ckr: 'CKR_USER_ALREADY_LOGGED_IN' }));
          }
        }),
        fuzzParameters(120),
      );
      expectAllServing(opened.group, 'the call orders');
      // Steps reached the tokens and some succeeded: the orders were not all refused up front.
      expect(outcomes.get('ok') ?? 0).toBeGreaterThan(20);
      expect(outcomes.get('ERR_PKCS11') ?? 0).toBeGreaterThan(0);
    },
    TEST_LIMIT_MS,
  );

  it(
    'data of 0 bytes to several MiB, single-part and multi-part, gives a result or a typed error, on the same member set',
    async () => {
      const opened = await openGroup();
      const { session } = opened;
      const [aes, hmac] = opened.handles;
      let large = 0;
      const sizes = fc.oneof(fc.constantFrom(0, 1, 15, 16, 17, 4095, 65_536, 65_537, 1 << 20, (4 << 20) + 3), fc.nat({ max: 70_000 }));
      await fc.assert(
        fc.asyncProperty(sizes, fc.constantFrom('gcm', 'cbc', 'cbc-pad', 'hmac', 'digest', 'multipart-gcm'), async (size, kind) => {
          if (size >= 1 << 20) large++;
          const input = Buffer.alloc(size, 0x5a);
          const iv = Buffer.alloc(kind === 'gcm' || kind === 'multipart-gcm' ? 12 : 16, 1);
          const what = `${kind} of ${size} bytes`;
          try {
            switch (kind) {
              case 'gcm': {
                const sealed = await bounded(session.encrypt({ name: 'AES_GCM', iv }, aes!, input), what);
                expect((await bounded(session.decrypt({ name: 'AES_GCM', iv }, aes!, sealed), what)).equals(input)).toBe(true);
                break;
              }
              case 'cbc':
                // Not a multiple of 16: the token refuses (CKR_DATA_LEN_RANGE), which is the caller's.
                await bounded(session.encrypt({ name: 'AES_CBC', iv }, aes!, input), what);
                break;
              case 'cbc-pad': {
                const sealed = await bounded(session.encrypt({ name: 'AES_CBC_PAD', iv }, aes!, input), what);
                expect(sealed.length).toBe(size + 16 - (size % 16));
                break;
              }
              case 'hmac':
                expect(await bounded(session.verify('SHA256_HMAC', hmac!, input, await session.sign('SHA256_HMAC', hmac!, input)), what)).toBe(true);
                break;
              case 'digest':
                expect((await bounded(session.digest('SHA256', input), what)).length).toBe(32);
                break;
              case 'multipart-gcm': {
                await session.encryptInit({ name: 'AES_GCM', iv }, aes!);
                const parts = [await session.encryptUpdate(input.subarray(0, size >> 1)), await session.encryptUpdate(input.subarray(size >> 1)), await session.encryptFinal()];
                expect(Buffer.concat(parts).length).toBe(size + 16);
                break;
              }
            }
          } catch (error) {
            if (error instanceof Error && error.message.startsWith('hang:')) throw error;
            expectTyped(error, what);
            // Only the block size can be wrong here.
            expect({ kind, ckr: (error as Pkcs11Error).ckr }).toEqual({ kind: 'cbc', ckr: 'CKR_DATA_LEN_RANGE' });
          }
          expectAllServing(opened.group, what);
        }),
        fuzzParameters(40),
      );
      // The MiB sizes were among the runs.
      expect(large).toBeGreaterThan(0);
    },
    TEST_LIMIT_MS,
  );

  it(
    'random PINs: a wrong one is refused as CKR_PIN_INCORRECT (or a typed argument error) and the right one still logs in',
    async () => {
      const opened = await openGroup();
      await opened.session.logout();
      // Each wrong login costs the token a PIN derivation (about 0.3 s on a busy machine): few runs in CI.
      const pin = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 12 }), anything).filter((p) => p !== opened.pin);
      await fc.assert(
        fc.asyncProperty(pin, async (p) => {
          const error = await bounded(opened.session.login(p as string), 'login').then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error, 'a wrong PIN logged in').toBeDefined();
          expectTyped(error, `login(<${typeof p}>)`);
          if (typeof p === 'string' && p.length > 0 && (error as HaError).code === 'ERR_PKCS11') expect((error as Pkcs11Error).ckr).toMatch(/^CKR_PIN_(INCORRECT|LEN_RANGE|INVALID)$/);
          // Never the PIN itself in the message.
          if (typeof p === 'string' && p.length >= 4) expect((error as Error).message).not.toContain(p);
          expectAllServing(opened.group, 'a wrong PIN');
        }),
        fuzzParameters(25),
      );
      await opened.session.login(opened.pin);
      expect(opened.group.status().loggedIn).toBe(true);
    },
    TEST_LIMIT_MS,
  );

  it(
    'random arguments to HaGroup and VirtualSlot methods (configs, member names, handles) give typed errors only',
    async () => {
      const opened = await openGroup();
      const { group } = opened;
      const names = new Set(group.status().members.map((m) => m.name));
      const notAMember = fc.oneof(fc.string({ maxLength: 10 }), anything).filter((n) => !names.has(n as string));
      const config = fc.oneof(
        anything,
        fc.record({ members: fc.oneof(anything, fc.array(fc.dictionary(fc.constantFrom('module', 'token', 'name', 'role', 'userPin', 'soPin'), anything), { maxLength: 3 })) }, { requiredKeys: [] }),
        fc.record({ members: fc.constant(fixture.bed.memberConfigs()), minReplicas: anything, deadlineMs: anything, scheduler: anything, transport: anything, journalPath: fc.constant(42) }, { requiredKeys: ['members'] }),
      );
      const groupCall = fc.oneof(
        fc.tuple(fc.constant('open'), config),
        fc.tuple(fc.constant('initDomain'), config),
        fc.tuple(fc.constant('recover'), notAMember),
        fc.tuple(fc.constant('removeMember'), notAMember),
        fc.tuple(fc.constant('setStandby'), notAMember, anything),
        fc.tuple(fc.constant('addMember'), fc.oneof(anything, fc.dictionary(fc.constantFrom('module', 'token', 'name', 'role'), anything))),
        fc.tuple(fc.constant('describeObject'), anything),
      );
      await fc.assert(
        fc.asyncProperty(groupCall, async ([method, ...args]) => {
          const what = `${method}(${args.map((a) => (safeJson(a) ?? typeof a).slice(0, 120)).join(', ')})`;
          const run = async (): Promise<unknown> => {
            switch (method) {
              case 'open':
                return HaGroup.open(args[0] as never);
              case 'initDomain':
                return HaGroup.initDomain(args[0] as never);
              case 'describeObject':
                return group.describeObject(args[0] as never);
              default:
                return (group as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!(...args);
            }
          };
          let result: unknown;
          try {
            result = await bounded(run(), what);
          } catch (error) {
            if (error instanceof Error && error.message.startsWith('hang:')) throw error;
            if (!HaError.is(error) || !['ERR_CONFIG', 'ERR_INVALID_ARGUMENT', 'ERR_DOMAIN', 'ERR_NO_MEMBER'].includes(error.code)) {
              throw new Error(`${what} threw ${(error as Error)?.name}: ${(error as Error)?.message}`);
            }
          }
          // A group the generated config opened after all is closed again.
          if (result instanceof HaGroup) await result.close();
          expectAllServing(group, what);
        }),
        fuzzParameters(150),
      );
      expect(opened.group.status().members.map((m) => m.role)).toEqual(['active', 'active', 'active']);
    },
    TEST_LIMIT_MS,
  );

  it('a new user\'s mistakes: getAttributes(handle, null | "label") is an InvalidArgumentError naming what is expected', async () => {
    const opened = await openGroup();
    const [aes] = opened.handles;
    for (const names of [null, 'label', undefined, 42, { label: true }]) {
      await expect(opened.session.getAttributes(aes!, names as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining("e.g. ['label']") });
    }
    await expect(opened.session.getAttributeValues(aes!, [1n] as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('bigint') });
    await expect(opened.session.login('1234', 2n as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    // Holes in arrays are entries too, not skipped.
    await expect(opened.session.generateKey('AES_KEY_GEN', [, ,] as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('template[0]') });
    await expect(opened.session.getAttributeValues(aes!, new Array<number>(2))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(opened.session.getAttributes(aes!, new Array(2))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(opened.session.generateRandom(1n as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(opened.group.recover(7n as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    expect(await opened.session.getAttributes(aes!, ['label'])).toEqual({ label: KEYS[0]!.label });
    // After a logout no member shows a private key: its handle is refused as such (not "no member"), until the next login.
    await opened.session.logout();
    await expect(opened.session.encrypt({ name: 'AES_GCM', iv: Buffer.alloc(12) }, aes!, Buffer.alloc(1))).rejects.toMatchObject({ code: 'ERR_INVALID_HANDLE', ckr: 'CKR_OBJECT_HANDLE_INVALID' });
    await opened.session.login(opened.pin);
    expect(await opened.session.encrypt({ name: 'AES_GCM', iv: Buffer.alloc(12) }, aes!, Buffer.alloc(1))).toHaveLength(17);
    expectAllServing(opened.group, 'the logout');
  });
});
