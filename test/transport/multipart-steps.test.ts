/**
 * The steps of multi-part operations carried by the in-process transport, under both call
 * placements: through `execute` and through `runNow` (the synchronous path a leased
 * session's steps take inline). Outputs are checked against node:crypto; two operations
 * interleaved on two sessions each stay on their own session.
 */
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import type { Command, CommandName, CommandResult } from '../../src/pkcs11/commands.js';
import { toMechanism } from '../../src/pkcs11/mechanism-table.js';
import { NOT_NOW } from '../../src/transport/transport.js';
import { inProcessToken } from '../helpers/in-process-token.js';

describe('InProcessTransport: steps of multi-part operations', () => {
  const { open, loggedIn, secret } = inProcessToken('mps');

  it.each(['inline', 'threads'] as const)('carries Init, Updates and Final through execute and runNow, interleaved on two sessions (calls %s)', async (calls) => {
    const { t, info } = await open(calls);
    const [a, b] = await loggedIn(t, info, 2);
    const aes = await secret(t, a!, 'aes');
    const hmac = await secret(t, a!, 'hmac');
    const iv = randomBytes(16);
    const parts = [randomBytes(1), randomBytes(4095), randomBytes(65536), randomBytes(17)];
    /** runNow when it can (inline only), else execute: both must give the same thing. */
    const step = async <N extends CommandName>(command: Extract<Command, { op: N }>, now: boolean): Promise<CommandResult<N>> => {
      if (now) {
        const result = t.runNow(command);
        if (calls === 'threads') expect(result).toBe(NOT_NOW);
        if (result !== NOT_NOW) return result;
      }
      return t.execute(command);
    };

    await t.execute({ op: 'encryptInit', session: a!, mechanism: toMechanism({ name: 'AES_CBC_PAD', iv }), key: aes.key });
    await t.execute({ op: 'signInit', session: b!, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key });
    const out: Buffer[] = [];
    let pending = 0;
    for (const [i, part] of parts.entries()) {
      const o = await step({ op: 'encryptUpdate', session: a!, data: part }, i % 2 === 0);
      out.push(o);
      pending += part.length - o.length;
      await step({ op: 'signUpdate', session: b!, data: part }, i % 2 === 1);
    }
    out.push(await t.execute({ op: 'encryptFinal', session: a!, pending }));
    const mac = await t.execute({ op: 'signFinal', session: b! });
    const whole = Buffer.concat(parts);
    const c = createCipheriv('aes-256-cbc', aes.value, iv);
    expect(Buffer.concat(out)).toEqual(Buffer.concat([c.update(whole), c.final()]));
    expect(mac).toEqual(createHmac('sha256', hmac.value).update(whole).digest());

    // A digest through runNow only (inline) or execute only (threads).
    await t.execute({ op: 'digestInit', session: a!, mechanism: toMechanism('SHA256') });
    for (const part of parts) await step({ op: 'digestUpdate', session: a!, data: part }, true);
    expect(await t.execute({ op: 'digestFinal', session: a! })).toEqual(createHash('sha256').update(whole).digest());
  });

  it.each(['inline', 'threads'] as const)('answers a step with no operation open with CKR_OPERATION_NOT_INITIALIZED, by either path (calls %s)', async (calls) => {
    const { t, info } = await open(calls);
    const [s] = await loggedIn(t, info, 1);
    const command = { op: 'digestUpdate', session: s!, data: Buffer.from('x') } as const;
    const thrown = (() => {
      try {
        return t.runNow(command);
      } catch (error) {
        return error;
      }
    })();
    if (calls === 'threads') expect(thrown).toBe(NOT_NOW);
    else expect(thrown).toMatchObject({ wire: { rv: pkcs11js.CKR_OPERATION_NOT_INITIALIZED } });
    await expect(t.execute(command)).rejects.toMatchObject({ wire: { rv: pkcs11js.CKR_OPERATION_NOT_INITIALIZED } });
  });

  it('runNow takes only multi-part steps, and nothing once closed', async () => {
    const { t, info } = await open('inline');
    const [s] = await loggedIn(t, info, 1);
    expect(t.runNow({ op: 'digest', session: s!, mechanism: toMechanism('SHA256'), data: Buffer.from('x') })).toBe(NOT_NOW);
    expect(t.runNow({ op: 'generateRandom', session: s!, length: 4 })).toBe(NOT_NOW);
    const before = t.calls.inline;
    expect(t.runNow({ op: 'digestInit', session: s!, mechanism: toMechanism('SHA256') })).toBeUndefined();
    expect(t.calls.inline).toBe(before + 1);
    await t.close();
    expect(t.runNow({ op: 'digestUpdate', session: s!, data: Buffer.from('x') })).toBe(NOT_NOW);
  });
});
