/**
 * InProcessTransport on a real SoftHSM2 token: inline calls against worker-thread calls,
 * the event loop under a load of inline calls, hand-offs to the threads, long calls.
 * Slice time is fake where a test needs to steer it; the calls themselves are real.
 */
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { MemberUnreachableError } from '../../src/errors/ha-error.js';
import type { Handle } from '../../src/pkcs11/commands.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { toMechanism } from '../../src/pkcs11/mechanism-table.js';
import { toRawTemplate } from '../../src/pkcs11/template-codec.js';
import { InlineSlicer, eventLoopTurns, type SliceTiming } from '../../src/transport/inline-slicer.js';
import { CommandFailedError } from '../../src/transport/transport.js';
import { WorkerPool } from '../../src/transport/worker-pool.js';
import { inProcessToken } from '../helpers/in-process-token.js';
import { markShort } from '../../src/pkcs11/short-commands.js';

/** Real turns of the event loop, but a clock that moves `step` ms at every reading (and `jump`s when told). */
/** A short EC P-256 session key pair generation (as key management marks them: src/pkcs11/short-commands.ts). */
const shortEcPair = (session: Handle) =>
  markShort({
    op: 'generateKeyPair',
    session,
    mechanism: toMechanism('EC_KEY_PAIR_GEN'),
    publicTemplate: toRawTemplate({ token: false, keyType: 'ec', ecParams: Buffer.from('06082a8648ce3d030107', 'hex'), verify: true }),
    privateTemplate: toRawTemplate({ token: false, keyType: 'ec', private: true, sensitive: true, sign: true }),
  });

const steppingTime = (step: number): SliceTiming & { jump(ms: number): void } => {
  let t = 0;
  return {
    now: () => (t += step),
    nextTurn: eventLoopTurns.nextTurn,
    jump: (ms) => {
      t += ms;
    },
  };
};

describe('InProcessTransport: inline calls', () => {
  const { open, loggedIn: sessionsOf, secret: find } = inProcessToken('ip');

  it.each(['inline', 'threads'] as const)('gives the module\'s answers and its typed errors (calls %s)', async (calls) => {
    const { t, info } = await open(calls);
    const [session] = await sessionsOf(t, info, 1);
    const aes = await find(t, session!, 'aes');
    const data = randomBytes(1000);
    const iv = randomBytes(12);
    const ct = await t.execute({ op: 'encrypt', session: session!, mechanism: toMechanism({ name: 'AES_GCM', iv }), key: aes.key, data });
    const cipher = createCipheriv('aes-256-gcm', aes.value, iv);
    expect(ct).toEqual(Buffer.concat([cipher.update(data), cipher.final(), cipher.getAuthTag()]));
    // A result is the caller's own: the next call does not overwrite it.
    const copy = Buffer.from(ct);
    await t.execute({ op: 'encrypt', session: session!, mechanism: toMechanism({ name: 'AES_GCM', iv: randomBytes(12) }), key: aes.key, data });
    expect(ct).toEqual(copy);
    expect(await t.execute({ op: 'decrypt', session: session!, mechanism: toMechanism({ name: 'AES_GCM', iv }), key: aes.key, data: ct })).toEqual(data);
    const failure = await t.execute({ op: 'sign', session: session!, mechanism: toMechanism('SHA256_HMAC'), key: Buffer.alloc(8, 0xee), data }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(CommandFailedError);
    expect((failure as CommandFailedError).wire).toMatchObject({ rv: pkcs11js.CKR_OBJECT_HANDLE_INVALID, fn: 'C_SignInit' });
    expect(t.calls.inline > 0).toBe(calls === 'inline');
    expect(t.pending).toBe(0);
  });

  it('one caller in a loop stays inline; 16 callers hand some calls to the threads; every answer is right', async () => {
    // Every clock reading moves 0.3 ms: a 1 ms slice holds a couple of calls, whatever this machine's speed.
    const { t, info } = await open('inline', new InlineSlicer(1, steppingTime(0.3)));
    const sessions = await sessionsOf(t, info, 16);
    const hmac = await find(t, sessions[0]!, 'hmac');
    const mac = (session: Handle, data: Buffer) => t.execute({ op: 'sign', session, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key, data });
    const loop = async (session: Handle, n: number, tag: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const data = Buffer.from(`caller ${tag} call ${i}`);
        expect(await mac(session, data)).toEqual(createHmac('sha256', hmac.value).update(data).digest());
      }
    };
    const before = t.calls;
    await loop(sessions[0]!, 300, 0);
    expect(t.calls.threads).toBe(before.threads);
    expect(t.calls.inline - before.inline).toBe(300);

    // 16 callers: once a slice is spent with several callers waiting, the threads get a share.
    const mid = t.calls;
    await Promise.all(sessions.map((s, i) => loop(s, 200, i)));
    const after = t.calls;
    expect(after.inline - mid.inline + after.threads - mid.threads).toBe(16 * 200);
    expect(after.threads - mid.threads).toBeGreaterThan(0);
    expect(after.inline - mid.inline).toBeGreaterThan(0);
    expect(t.pending).toBe(0);
  });

  it('callers in a loop of inline calls still let the event loop turn', async () => {
    // Every clock reading moves 0.3 ms: a 1 ms slice holds a handful of calls.
    const { t, info } = await open('inline', new InlineSlicer(1, steppingTime(0.3)));
    const sessions = await sessionsOf(t, info, 4);
    const hmac = await find(t, sessions[0]!, 'hmac');
    let done = 0;
    let doneAtTurn = -1;
    setImmediate(() => (doneAtTurn = done));
    await Promise.all(
      sessions.map(async (session) => {
        for (let i = 0; i < 100; i++) {
          await t.execute({ op: 'sign', session, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key, data: Buffer.from([i]) });
          done++;
        }
      }),
    );
    // Without slices, all 400 calls would resolve before any other macrotask ran.
    expect(doneAtTurn).toBeGreaterThanOrEqual(0);
    expect(doneAtTurn).toBeLessThan(40);
    expect(done).toBe(400);
  });

  it('a kind of call that is slow three times in a row goes to the threads from then on; other kinds stay inline', async () => {
    // Every clock reading moves 3 ms: every inline call "takes" 3 ms, over the 2 ms limit.
    const { t, info } = await open('inline', new InlineSlicer(1, steppingTime(3)));
    const [session] = await sessionsOf(t, info, 1);
    const hmac = await find(t, session!, 'hmac');
    const aes = await find(t, session!, 'aes');
    const sign = () => t.execute({ op: 'sign', session: session!, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key, data: Buffer.from('x') });
    const base = t.calls;
    for (let i = 0; i < 3; i++) await sign();
    expect(t.calls).toEqual({ inline: base.inline + 3, threads: base.threads });
    // From then on as long commands: one per batch, on every thread (not batched on the hot one).
    const run = vi.spyOn(WorkerPool.prototype, 'run');
    try {
      for (let i = 0; i < 2; i++) expect(await sign()).toEqual(createHmac('sha256', hmac.value).update('x').digest());
      expect(run.mock.calls.map((call) => call[1])).toEqual([{ long: true }, { long: true }]);
    } finally {
      run.mockRestore();
    }
    expect(t.calls).toEqual({ inline: base.inline + 3, threads: base.threads + 2 });
    // Another key is another kind.
    await t.execute({ op: 'encrypt', session: session!, mechanism: toMechanism({ name: 'AES_GCM', iv: randomBytes(12) }), key: aes.key, data: Buffer.from('y') });
    expect(t.calls.inline).toBe(base.inline + 4);
  });

  it('a long kind is tried inline again after 10 s; one more slow call makes it long again', async () => {
    const time = steppingTime(3);
    const { t, info } = await open('inline', new InlineSlicer(1, time));
    const [session] = await sessionsOf(t, info, 1);
    const hmac = await find(t, session!, 'hmac');
    const sign = () => t.execute({ op: 'sign', session: session!, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key, data: Buffer.from('x') });
    const base = t.calls;
    for (let i = 0; i < 4; i++) await sign();
    expect(t.calls).toEqual({ inline: base.inline + 3, threads: base.threads + 1 });
    time.jump(10_001);
    await sign(); // inline again, and slow again
    expect(t.calls).toEqual({ inline: base.inline + 4, threads: base.threads + 1 });
    await sign();
    expect(t.calls).toEqual({ inline: base.inline + 4, threads: base.threads + 2 });
  });

  it('a call slow by the wall clock but not in CPU time is no strike (a descheduled thread); slow in both, the kind is long after one more call', async () => {
    // Every clock reading moves 3 ms of wall time; the CPU clock moves 0.01 ms (descheduled) or 3 ms (busy).
    let cpuStep = 0.01;
    let cpu = 0;
    const time = { ...steppingTime(3), cpuNow: () => (cpu += cpuStep) };
    const { t, info } = await open('inline', new InlineSlicer(1, time));
    const [session] = await sessionsOf(t, info, 1);
    const hmac = await find(t, session!, 'hmac');
    const sign = () => t.execute({ op: 'sign', session: session!, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key, data: Buffer.from('x') });
    const base = t.calls;
    for (let i = 0; i < 6; i++) await sign();
    expect(t.calls).toEqual({ inline: base.inline + 6, threads: base.threads });
    // Now busy: the kind is suspect already, so three CPU-confirmed slow calls make it long.
    cpuStep = 3;
    for (let i = 0; i < 4; i++) await sign();
    expect(t.calls).toEqual({ inline: base.inline + 9, threads: base.threads + 1 });
  });

  it('short EC key generations under several callers partly run on libuv\'s pool (pkcs11js async); a lone caller\'s stay inline; every pair is usable', async () => {
    const { t, info } = await open('inline', new InlineSlicer(1, steppingTime(0.3)));
    const sessions = await sessionsOf(t, info, 8);
    const generate = (session: Handle) => t.execute(shortEcPair(session));
    const check = async (session: Handle, pair: { publicKey: Handle; privateKey: Handle }) => {
      const signature = await t.execute({ op: 'sign', session, mechanism: toMechanism('ECDSA'), key: pair.privateKey, data: Buffer.alloc(32, 7) });
      expect(await t.execute({ op: 'verify', session, mechanism: toMechanism('ECDSA'), key: pair.publicKey, data: Buffer.alloc(32, 7), signature })).toBe(true);
      for (const object of [pair.privateKey, pair.publicKey]) await t.execute(markShort({ op: 'destroyObject', session, object }));
    };
    const lone = t.calls;
    for (let i = 0; i < 5; i++) await check(sessions[0]!, await generate(sessions[0]!));
    expect(t.calls.threads).toBe(lone.threads);
    const before = t.calls;
    await Promise.all(sessions.map(async (session) => {
      for (let i = 0; i < 10; i++) await check(session, await generate(session));
    }));
    expect(t.calls.threads - before.threads).toBeGreaterThan(0);
    expect(t.pending).toBe(0);
  });

  it('key generations past the libuv limit wait for a free place there instead of running inline; closing rejects the waiting ones as unsent', async () => {
    const { t, info } = await open('inline', new InlineSlicer(1, steppingTime(0.3)));
    const sessions = await sessionsOf(t, info, 10);
    const generate = (session: Handle) => t.execute(shortEcPair(session));
    const before = t.calls;
    // The first three fill the first slice inline (0.3 ms per clock reading, 1 ms of budget);
    // the seven others find callers waiting and go to libuv's pool, 4 at once, the rest
    // waiting for a place there (before, those past the 4 ran inline too: 6 inline, 4 on the pool).
    const pairs = await Promise.all(sessions.map(generate));
    expect(t.calls.inline - before.inline).toBe(3);
    expect(t.calls.threads - before.threads).toBe(7);
    for (const [i, pair] of pairs.entries()) {
      const signature = await t.execute({ op: 'sign', session: sessions[i]!, mechanism: toMechanism('ECDSA'), key: pair.privateKey, data: Buffer.alloc(32, 1) });
      expect(await t.execute({ op: 'verify', session: sessions[i]!, mechanism: toMechanism('ECDSA'), key: pair.publicKey, data: Buffer.alloc(32, 1), signature })).toBe(true);
    }
    // Close while generations are under way and others wait: the waiting ones are refused as unsent, the running ones end first.
    const late = sessions.map((s) => generate(s).then(() => 'made', (error: unknown) => error));
    await t.close();
    const outcomes = await Promise.all(late);
    const refused = outcomes.filter((o) => o !== 'made');
    expect(refused.length).toBeGreaterThan(0);
    for (const error of refused) {
      expect(error).toBeInstanceOf(MemberUnreachableError);
      expect((error as MemberUnreachableError).unsent).toBe(true);
    }
  });

  it('hot calls are not handed to threads busy with key generations: they run inline, before the generations end', async () => {
    // 0.3 ms per reading: slices of two calls, so four callers leave callers waiting (demand).
    const { t, info } = await open('inline', new InlineSlicer(1, steppingTime(0.3)));
    const sessions = await sessionsOf(t, info, 6);
    const hmac = await find(t, sessions[0]!, 'hmac');
    const order: string[] = [];
    // Two RSA-4096 generations: one per worker thread, the hot one included.
    const generations = [4, 5].map((i) =>
      t
        .execute({
          op: 'generateKeyPair',
          session: sessions[i]!,
          mechanism: toMechanism('RSA_PKCS_KEY_PAIR_GEN'),
          publicTemplate: toRawTemplate({ token: false, modulusBits: 4096, publicExponent: 65537, verify: true }),
          privateTemplate: toRawTemplate({ token: false, private: true, sensitive: true, sign: true }),
        })
        .then(() => order.push('generation')),
    );
    await Promise.resolve();
    const before = t.calls;
    const macs = sessions.slice(0, 4).map(async (session, i) => {
      for (let n = 0; n < 5; n++) {
        const data = Buffer.from(`${i}/${n}`);
        expect(await t.execute({ op: 'sign', session, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key, data })).toEqual(createHmac('sha256', hmac.value).update(data).digest());
      }
      order.push('macs');
    });
    await Promise.all([...macs, ...generations]);
    expect(order).toEqual(['macs', 'macs', 'macs', 'macs', 'generation', 'generation']);
    expect(t.calls.inline - before.inline).toBe(20);
    expect(t.calls.threads - before.threads).toBe(0);
  });

  it.each(['sign', 'digest', 'decrypt'] as const)('an inline %s result is the caller\'s own copy', async (op) => {
    const { t, info } = await open('inline');
    const [session] = await sessionsOf(t, info, 1);
    const hmac = await find(t, session!, 'hmac');
    const aes = await find(t, session!, 'aes');
    const sealed = async (text: string) => {
      const iv = randomBytes(12);
      return { iv, ct: await t.execute({ op: 'encrypt', session: session!, mechanism: toMechanism({ name: 'AES_GCM', iv }), key: aes.key, data: Buffer.from(text) }) };
    };
    const one = await sealed('first');
    const two = await sealed('second, longer than the first');
    const run = (text: string, box: { iv: Buffer; ct: Buffer }): Promise<Buffer> =>
      op === 'sign'
        ? t.execute({ op, session: session!, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key, data: Buffer.from(text) })
        : op === 'digest'
          ? t.execute({ op, session: session!, mechanism: toMechanism('SHA256'), data: Buffer.from(text) })
          : t.execute({ op, session: session!, mechanism: toMechanism({ name: 'AES_GCM', iv: box.iv }), key: aes.key, data: box.ct });
    const first = await run('first', one);
    const copy = Buffer.from(first);
    await run('second, longer than the first', two);
    expect(first).toEqual(copy);
    expect(t.calls.inline).toBeGreaterThan(0);
    // verify answers a boolean, never a buffer
    if (op === 'sign') {
      expect(await t.execute({ op: 'verify', session: session!, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key, data: Buffer.from('first'), signature: first })).toBe(true);
    }
  });

  it('calls waiting for a slice when the transport closes fail as never sent; nothing is left pending', async () => {
    // 10 ms per reading: the first call spends the slice, the others wait for the next turn.
    const { t, info } = await open('inline', new InlineSlicer(1, steppingTime(10)));
    const sessions = await sessionsOf(t, info, 3);
    const hmac = await find(t, sessions[0]!, 'hmac');
    const running = sessions.map((session) => t.execute({ op: 'sign', session, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key, data: Buffer.from('z') }));
    expect(t.pending).toBe(2);
    const closing = t.close();
    const outcomes = await Promise.allSettled(running);
    await closing;
    expect(outcomes[0]!.status).toBe('fulfilled');
    for (const o of outcomes.slice(1)) {
      expect(o.status).toBe('rejected');
      const reason = (o as PromiseRejectedResult).reason as MemberUnreachableError;
      expect(reason).toBeInstanceOf(MemberUnreachableError);
      expect(reason.unsent).toBe(true);
    }
    expect(t.pending).toBe(0);
  });
});
