/**
 * The steps of multi-part operations carried by a member host process (calls inline and on
 * threads): each operation stays on the module session its Init ran on for its whole
 * life, whatever else the host serves meanwhile (single-part calls, other operations on
 * other sessions); a step naming a session where no operation is open fails there.
 */
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostTransport } from '../../src/host/host-transport.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import type { Handle } from '../../src/pkcs11/commands.js';
import { toMechanism } from '../../src/pkcs11/mechanism-table.js';
import { toRawTemplate } from '../../src/pkcs11/template-codec.js';
import type { ProvisionedKey } from '../../src/testbed/provision.js';
import type { Testbed, TestbedToken } from '../../src/testbed/softhsm-testbed.js';
import { CommandFailedError } from '../../src/transport/transport.js';
import { keyedToken, memberOptions } from '../helpers/keyed-token.js';

describe('member host: multi-part operations', () => {
  let bed: Testbed;
  let token: TestbedToken;
  let keys: Map<string, ProvisionedKey>;
  const transports: HostTransport[] = [];

  beforeAll(async () => {
    ({ bed, token, keys } = await keyedToken('hmp'));
  });
  afterAll(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await bed?.dispose();
  });

  it.each(['inline', 'threads'] as const)('keeps each operation on its module session for its life, interleaved with other work (calls %s)', async (calls) => {
    const t = new HostTransport({ ...memberOptions(token), calls });
    transports.push(t);
    const info = await t.connect();
    const sessions = await Promise.all(Array.from({ length: 4 }, () => t.execute({ op: 'openSession', slot: info.slot })));
    try {
      await t.execute({ op: 'login', session: sessions[0]!, userType: pkcs11js.CKU_USER, pin: token.userPin });
    } catch (error) {
      if (!(error instanceof CommandFailedError && error.wire.rv === pkcs11js.CKR_USER_ALREADY_LOGGED_IN)) throw error;
    }
    const [digestS, cbcS, macS, other] = sessions as [Handle, Handle, Handle, Handle];
    const secret = async (kind: 'aes' | 'hmac'): Promise<{ key: Handle; value: Buffer }> => {
      const k = keys.get(kind) as Extract<ProvisionedKey, { kind: 'aes' | 'hmac' }>;
      const [key] = await t.execute({ op: 'findObjects', session: other, template: toRawTemplate({ label: k.label, class: 'secretKey' }) });
      return { key: key!, value: k.value };
    };
    const aes = await secret('aes');
    const hmac = await secret('hmac');
    const iv = randomBytes(16);
    const parts = [randomBytes(100), randomBytes(70_000), randomBytes(1), randomBytes(33)];

    await t.execute({ op: 'digestInit', session: digestS, mechanism: toMechanism('SHA256') });
    await t.execute({ op: 'encryptInit', session: cbcS, mechanism: toMechanism({ name: 'AES_CBC_PAD', iv }), key: aes.key });
    await t.execute({ op: 'signInit', session: macS, mechanism: toMechanism('SHA256_HMAC'), key: hmac.key });
    const cipher: Buffer[] = [];
    let pending = 0;
    for (const part of parts) {
      // The three operations' steps in flight together, with single-part calls on another
      // session between them: each step must land on its own operation's session.
      const [, out, , single] = await Promise.all([
        t.execute({ op: 'digestUpdate', session: digestS, data: part }),
        t.execute({ op: 'encryptUpdate', session: cbcS, data: part }),
        t.execute({ op: 'signUpdate', session: macS, data: part }),
        t.execute({ op: 'digest', session: other, mechanism: toMechanism('SHA256'), data: part }),
      ]);
      expect(single).toEqual(createHash('sha256').update(part).digest());
      cipher.push(out);
      pending += part.length - out.length;
    }
    // Steps on a session where that kind of operation is not open fail there (nothing moved).
    await expect(t.execute({ op: 'digestUpdate', session: macS, data: parts[0]! })).rejects.toMatchObject({ wire: { rv: pkcs11js.CKR_OPERATION_NOT_INITIALIZED } });
    await expect(t.execute({ op: 'encryptUpdate', session: other, data: parts[0]! })).rejects.toMatchObject({ wire: { rv: pkcs11js.CKR_OPERATION_NOT_INITIALIZED } });

    const whole = Buffer.concat(parts);
    const [digest, last, mac] = await Promise.all([
      t.execute({ op: 'digestFinal', session: digestS }),
      t.execute({ op: 'encryptFinal', session: cbcS, pending }),
      t.execute({ op: 'signFinal', session: macS }),
    ]);
    expect(digest).toEqual(createHash('sha256').update(whole).digest());
    const c = createCipheriv('aes-256-cbc', aes.value, iv);
    expect(Buffer.concat([...cipher, last])).toEqual(Buffer.concat([c.update(whole), c.final()]));
    expect(mac).toEqual(createHmac('sha256', hmac.value).update(whole).digest());
    // Ended: a further step is refused, and the session takes a new operation.
    await expect(t.execute({ op: 'digestUpdate', session: digestS, data: parts[0]! })).rejects.toMatchObject({ wire: { rv: pkcs11js.CKR_OPERATION_NOT_INITIALIZED } });
    await t.execute({ op: 'digestInit', session: digestS, mechanism: toMechanism('SHA256') });
    expect(await t.execute({ op: 'digestFinal', session: digestS })).toEqual(createHash('sha256').digest());
  });
});
