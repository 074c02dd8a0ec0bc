/**
 * A synchronous call blocks its caller while the group keeps running in the facade's
 * worker: when the member serving it hangs, the call is answered by another member after
 * the deadline, as an asynchronous one would be, and the caller sees no error.
 */
import { createHmac } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { afterAll, describe, expect, it } from 'vitest';
import { PKCS11 } from '../../src/facade/pkcs11.js';
import { until } from '../helpers/until.js';
import { facadeFixture, memberHostPids, secretValue } from './facade-fixture.js';

const fixture = facadeFixture('s');
const F = pkcs11js;
let p: PKCS11 | undefined;
afterAll(() => p?.C_Finalize());

describe('synchronous calls during failover', () => {
  it('answer with the right result and no error while a member host hangs', async () => {
    p = new PKCS11(fixture.config({ deadlineMs: 1500, heartbeatIntervalMs: 300, recovery: { maxAttempts: 0 } }));
    p.C_Initialize();
    const [slot] = p.C_GetSlotList(true);
    const session = p.C_OpenSession(slot!, F.CKF_SERIAL_SESSION | F.CKF_RW_SESSION);
    p.C_Login(session, F.CKU_USER, fixture.userPin);
    p.C_FindObjectsInit(session, [{ type: F.CKA_LABEL, value: 's-hmac' }]);
    const key = p.C_FindObjects(session)!;
    p.C_FindObjectsFinal(session);
    const data = Buffer.from('hang');
    const expected = createHmac('sha256', secretValue(fixture.keys, 'hmac')).update(data).digest();
    await until(() => memberHostPids().length === 3, 'three member hosts');
    const hosts = memberHostPids();
    let slowest = 0;
    for (let i = 0; i < 60; i++) {
      if (i === 10) fixture.groups.freeze(hosts[1]!);
      const start = Date.now();
      p.C_SignInit(session, { mechanism: F.CKM_SHA256_HMAC }, key);
      expect(p.C_Sign(session, data, Buffer.alloc(32))).toEqual(expected);
      slowest = Math.max(slowest, Date.now() - start);
    }
    // Some call waited for the hung member's deadline (the group failed it over meanwhile).
    expect(slowest).toBeGreaterThanOrEqual(1000);
  });
});
