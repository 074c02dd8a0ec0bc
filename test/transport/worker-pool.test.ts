/**
 * WorkerPool on a real SoftHSM2 token: which threads take hot commands, and answers taken
 * by poll() while the calling thread never yields to the event loop.
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Command, Handle } from '../../src/pkcs11/commands.js';
import { acquireModule, releaseModule, type LoadedModule } from '../../src/pkcs11/module-registry.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { toMechanism } from '../../src/pkcs11/mechanism-table.js';
import { toRawTemplate } from '../../src/pkcs11/template-codec.js';
import { provisionKeys, standardKeys, type ProvisionedKey } from '../../src/testbed/provision.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { WorkerPool } from '../../src/transport/worker-pool.js';

describe('WorkerPool', () => {
  let bed: Testbed;
  let module: LoadedModule;
  let sessions: Handle[];
  let key: Handle;
  let hmac: Extract<ProvisionedKey, { kind: 'hmac' }>;
  const pools: WorkerPool[] = [];

  const sign = (i: number): Command => ({ op: 'sign', session: sessions[i]!, mechanism: toMechanism('SHA256_HMAC'), key, data: Buffer.from(`m${i}`) });
  const start = async (hotThreads: number): Promise<WorkerPool> => {
    const pool = await WorkerPool.start(module.path, { threads: 2, hotThreads });
    pools.push(pool);
    return pool;
  };

  beforeAll(async () => {
    bed = await createTestbed({ count: 1 });
    const token = bed.tokens[0]!;
    const keys = standardKeys('wp');
    provisionKeys(bed.tokens, keys);
    hmac = keys.find((k) => k.kind === 'hmac') as typeof hmac;
    module = acquireModule(token.modulePath, token.env, 'worker pool test');
    const p = module.pkcs11;
    const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === token.label)!;
    sessions = Array.from({ length: 17 }, () => p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION));
    p.C_Login(sessions[0]!, pkcs11js.CKU_USER, token.userPin);
    p.C_FindObjectsInit(sessions[0]!, toRawTemplate({ label: hmac.label, class: 'secretKey' }));
    [key] = p.C_FindObjects(sessions[0]!, 1) as [Handle];
    p.C_FindObjectsFinal(sessions[0]!);
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.close()));
    for (const s of sessions ?? []) module.pkcs11.C_CloseSession(s);
    if (module) releaseModule(module);
    await bed?.dispose();
  });

  it.each([1, 2])('hot commands go only to the first %i thread(s); a long command prefers a thread that takes no hot ones', async (hotThreads) => {
    const pool = await start(hotThreads);
    expect(pool.hotThreads).toBe(hotThreads);
    // On a tie, the last thread: the cold one when there is one.
    const first = pool.run({ op: 'findObjects', session: sessions[16]!, template: toRawTemplate({ label: hmac.label }) });
    await Promise.resolve();
    expect(pool.batchesPerThread).toEqual([0, 1]);
    expect(await first).toHaveLength(1);
    const running = Array.from({ length: 16 }, (_, i) => pool.run(sign(i)));
    await Promise.resolve(); // the batches leave in a microtask
    expect(pool.batchesPerThread).toEqual(hotThreads === 1 ? [2, 0] : [2, 2]);
    const search = pool.run({ op: 'findObjects', session: sessions[16]!, template: toRawTemplate({ label: hmac.label }) });
    await Promise.resolve();
    if (hotThreads === 1) expect(pool.batchesPerThread).toEqual([2, 1]);
    const macs = await Promise.all(running);
    macs.forEach((mac, i) => expect(mac).toEqual(createHmac('sha256', hmac.value).update(`m${i}`).digest()));
    expect(await search).toHaveLength(1);
    expect(pool.pending).toBe(0);
  });

  it('a hot command run as long travels alone, on every thread, the cold one first; it holds up no hot batch', async () => {
    const pool = await start(1);
    const first = pool.run(sign(0), { long: true });
    await Promise.resolve();
    expect(pool.batchesPerThread).toEqual([0, 1]);
    const rest = [1, 2, 3, 4, 5].map((i) => pool.run(sign(i), { long: true }));
    await Promise.resolve();
    // One command per batch, two batches per thread, over both threads; the sixth waits.
    expect(pool.batchesPerThread).toEqual([2, 2]);
    expect(pool.hotPending).toBe(0);
    expect(pool.hotReady).toBe(false);
    const macs = await Promise.all([first, ...rest]);
    macs.forEach((mac, i) => expect(mac).toEqual(createHmac('sha256', hmac.value).update(`m${i}`).digest()));
    expect(pool.hotReady).toBe(true);
    expect(pool.pending).toBe(0);
  });

  it('a hot command never waits behind a long one on a hot thread: it stays queued until a hot thread is free of them', async () => {
    const pool = await start(1);
    const generate = (i: number) =>
      pool.run({
        op: 'generateKeyPair',
        session: sessions[i]!,
        mechanism: toMechanism('RSA_PKCS_KEY_PAIR_GEN'),
        publicTemplate: toRawTemplate({ token: false, modulusBits: 4096, publicExponent: 65537, verify: true }),
        privateTemplate: toRawTemplate({ token: false, private: true, sensitive: true, sign: true }),
      });
    // The first goes to the cold thread, the second to the least busy: the hot one.
    const generations = [generate(14), generate(15)];
    await Promise.resolve();
    expect(pool.batchesPerThread).toEqual([1, 1]);
    expect(pool.hotReady).toBe(false);
    const mac = pool.run(sign(2));
    await Promise.resolve();
    expect(pool.batchesPerThread).toEqual([1, 1]); // not sent behind a generation
    expect(pool.hotPending).toBe(1);
    expect(await mac).toEqual(createHmac('sha256', hmac.value).update('m2').digest());
    await Promise.all(generations);
    expect(pool.hotReady).toBe(true);
    expect(pool.hotPending).toBe(0);
    expect(pool.pending).toBe(0);
  });

  it('poll() takes answers while the calling thread never returns to the event loop', async () => {
    const pool = await start(1);
    let settled = false;
    const running = pool.run(sign(1)).then((mac) => {
      settled = true;
      return mac;
    });
    await Promise.resolve();
    expect(pool.pending).toBe(1);
    // Synchronous from here: only poll() can take the answer (bounded: 10 s).
    const end = performance.now() + 10_000;
    while (pool.pending > 0 && performance.now() < end) pool.poll();
    expect(pool.pending).toBe(0);
    expect(settled).toBe(false); // settled now, seen by callers in the next microtasks
    expect(await running).toEqual(createHmac('sha256', hmac.value).update('m1').digest());
    expect(settled).toBe(true);
  });
});
