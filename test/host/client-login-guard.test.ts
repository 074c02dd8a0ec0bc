/**
 * Several application processes on one remote member host: a real `pkcs11-ha host` process
 * on a SoftHSM2 token, and several protocol clients over TLS, each as an application
 * would be. Login state belongs to the host's process, so the host keeps each client
 * honest: a PIN per client, a wrong PIN never reaching the token twice, logouts, sessions
 * and session objects kept apart. Token logins are counted by the host (its stats).
 */
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientLoginGuard, type GuardExecute } from '../../src/host/client-login-guard.js';
import { pkcs11js as P } from '../../src/native/pkcs11js.js';
import type { Handle } from '../../src/pkcs11/commands.js';
import { RpcClient } from '../../src/rpc/rpc-client.js';
import { tlsConnector } from '../../src/rpc/tls-stream.js';
import { provisionKeys, standardKeys } from '../../src/testbed/provision.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { CommandFailedError } from '../../src/transport/transport.js';
import { makeCertificates, type TestCertificates } from '../helpers/tls-certificates.js';
import { startTlsHost, type TlsHost } from '../helpers/tls-hosts.js';

const KEYS = standardKeys('g');
const HMAC_VALUE = (KEYS.find((k) => k.kind === 'hmac') as { value: Buffer }).value;
const DATA = Buffer.from('per-client login');
const CKU_USER = 1;
const CKA_CLASS = 0x0;
const CKA_TOKEN = 0x1;
const CKA_PRIVATE = 0x2;
const CKA_LABEL = 0x3;
const CKO_DATA = 0x0;
const CKM_SHA256_HMAC = 0x251;
const CKR_OBJECT_HANDLE_INVALID = 0x82;
const CKR_PIN_INCORRECT = 0xa0;
const CKR_SESSION_HANDLE_INVALID = 0xb3;
const CKR_USER_NOT_LOGGED_IN = 0x101;

let bed: Testbed;
let certs: TestCertificates;
const hosts: TlsHost[] = [];
const clients: RpcClient[] = [];

beforeAll(async () => {
  bed = await createTestbed({ count: 2 });
  provisionKeys(bed.tokens, KEYS);
  certs = await makeCertificates(join(bed.dir, 'tls'), ['app-a', 'app-b', 'app-c']);
  for (const token of bed.tokens) hosts.push(await startTlsHost(bed.dir, token, certs));
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await Promise.allSettled(hosts.map((h) => h.stop()));
  await bed?.dispose();
});

/** A connected client (an application process) and a session of its own. */
async function app(host: TlsHost, name: string): Promise<{ client: RpcClient; session: Handle }> {
  const client = new RpcClient({ member: name, kind: 'tls', connect: tlsConnector({ url: host.url, ca: certs.ca, ...certs.client(name) }), secret: new Uint8Array(0) });
  clients.push(client);
  const token = await client.connect();
  const session = await client.execute({ op: 'openSession', slot: token.slot });
  return { client, session };
}

const logins = async (c: { client: RpcClient }) => (await c.client.hostStats()).logins!;
const find = (c: { client: RpcClient; session: Handle }, label?: string) =>
  c.client.execute({ op: 'findObjects', session: c.session, template: label === undefined ? [] : [{ type: CKA_LABEL, value: label }] });
const hmac = (c: { client: RpcClient; session: Handle }, key: Handle) => c.client.execute({ op: 'sign', session: c.session, key, mechanism: { mechanism: CKM_SHA256_HMAC }, data: DATA });
const login = (c: { client: RpcClient; session: Handle }, pin: string) => c.client.execute({ op: 'login', session: c.session, userType: CKU_USER, pin });
const refusedWith = (rv: number) => ({ wire: { rv } });
/** A public data object in the client's session, labelled `label`. */
const sessionObject = (c: { client: RpcClient; session: Handle }, label: string) =>
  c.client.execute({
    op: 'createObject',
    session: c.session,
    template: [
      { type: CKA_CLASS, value: CKO_DATA },
      { type: CKA_TOKEN, value: false },
      { type: CKA_PRIVATE, value: false },
      { type: CKA_LABEL, value: label },
    ],
  });

describe('several clients on one member host', () => {
  it('a client uses private objects only with the right PIN of its own, even with the token logged in by another', async () => {
    const host = hosts[0]!;
    const pin = bed.tokens[0]!.userPin;
    const a = await app(host, 'app-a');
    const b = await app(host, 'app-b');
    await login(a, pin);
    expect(await logins(a)).toMatchObject({ tokenLogins: 1, refusedLogins: 0, clientsLoggedIn: 1 });
    const [key] = await find(a, 'g-hmac');
    expect(key).toBeDefined();
    expect((await hmac(a, key!)).equals(createHmac('sha256', HMAC_VALUE).update(DATA).digest())).toBe(true);

    // B has not logged in: the secret key is private, so B neither finds it nor may use it.
    expect(await find(b, 'g-hmac')).toEqual([]);
    const seenByB = await find(b);
    expect(seenByB.length).toBeGreaterThan(0); // the public keys
    expect(seenByB.length).toBeLessThan((await find(a)).length);
    await expect(hmac(b, key!)).rejects.toMatchObject(refusedWith(CKR_USER_NOT_LOGGED_IN));

    // A wrong PIN from B is refused by the host: the token sees no login, A stays logged in.
    await expect(login(b, `${pin}9`)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    expect(await logins(a)).toMatchObject({ tokenLogins: 1, refusedLogins: 1, clientsLoggedIn: 1 });
    expect((await hmac(a, key!)).length).toBe(32);

    // The right PIN lets B in, still without a second token login.
    await login(b, pin);
    expect(await logins(b)).toMatchObject({ tokenLogins: 1, clientsLoggedIn: 2 });
    expect((await hmac(b, key!)).length).toBe(32);

    // B's logout is B's alone.
    await b.client.execute({ op: 'logout', session: b.session });
    await expect(hmac(b, key!)).rejects.toMatchObject(refusedWith(CKR_USER_NOT_LOGGED_IN));
    expect((await hmac(a, key!)).length).toBe(32);
    expect(await logins(a)).toMatchObject({ clientsLoggedIn: 1 });
  }, 60_000);

  it("sessions and session objects belong to their client; a client's departure closes only its own", async () => {
    const host = hosts[0]!;
    const pin = bed.tokens[0]!.userPin;
    const a = await app(host, 'app-a');
    const c = await app(host, 'app-c');
    await login(a, pin).catch(() => undefined);
    await login(c, pin);
    const object = await sessionObject(a, 'scratch-a');
    expect(await find(a, 'scratch-a')).toHaveLength(1);
    // C neither finds A's session object nor reaches it by its handle, nor uses A's session.
    expect(await find(c, 'scratch-a')).toEqual([]);
    await expect(c.client.execute({ op: 'getAttributes', session: c.session, object, types: [CKA_LABEL] })).rejects.toMatchObject(refusedWith(CKR_OBJECT_HANDLE_INVALID));
    await expect(c.client.execute({ op: 'generateRandom', session: a.session, length: 4 })).rejects.toMatchObject(refusedWith(CKR_SESSION_HANDLE_INVALID));
    // A goes away: its sessions (and its session object) go, C is still logged in and served.
    await a.client.close();
    const [key] = await find(c, 'g-hmac');
    expect((await hmac(c, key!)).length).toBe(32);
    expect(await find(c, 'scratch-a')).toEqual([]);
  }, 60_000);

  it('a second command on a session with one in flight is refused, and the host lives on', async () => {
    const host = hosts[0]!;
    const a = await app(host, 'app-a');
    await login(a, bed.tokens[0]!.userPin).catch(() => undefined);
    // Key generation runs on the host's threads: a second call on its session would crash SoftHSM.
    const generating = a.client.execute({ op: 'generateKey', session: a.session, mechanism: { mechanism: 0x1080 }, template: [{ type: 0x161, value: 32 }, { type: CKA_TOKEN, value: false }] });
    await expect(a.client.execute({ op: 'generateRandom', session: a.session, length: 4 })).rejects.toMatchObject(refusedWith(0x90));
    expect(await generating).toBeInstanceOf(Buffer);
    expect(await a.client.execute({ op: 'generateRandom', session: a.session, length: 4 })).toHaveLength(4);
  }, 60_000);

  it('before any login succeeded, the same wrong PIN reaches the token once', async () => {
    const host = hosts[1]!;
    const pin = bed.tokens[1]!.userPin;
    const a = await app(host, 'app-a');
    const b = await app(host, 'app-b');
    await expect(login(a, `${pin}1`)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    await expect(login(b, `${pin}1`)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    await expect(login(a, `${pin}1`)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    expect(await logins(a)).toMatchObject({ tokenLogins: 1, refusedLogins: 2, clientsLoggedIn: 0 });
    // The right PIN goes to the token; afterwards no wrong PIN does.
    await login(b, pin);
    await expect(login(a, `${pin}2`)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    expect(await logins(a)).toMatchObject({ tokenLogins: 2, refusedLogins: 3, clientsLoggedIn: 1 });
    // The host never logs PINs.
    expect(host.log.join('\n')).not.toContain(pin);
  }, 60_000);

  it('a PIN change comes only from a client logged in itself, and the PIN the host checks follows it', async () => {
    const host = hosts[1]!;
    const pin = bed.tokens[1]!.userPin;
    const next = '58203917';
    const a = await app(host, 'app-a');
    const b = await app(host, 'app-b');
    await login(a, pin);
    const setPin = (c: { client: RpcClient; session: Handle }, oldPin: string, newPin: string) => c.client.execute({ op: 'setPin', session: c.session, oldPin, newPin });
    // B has not logged in: another client's login does not let it change the PIN.
    await expect(setPin(b, pin, next)).rejects.toMatchObject(refusedWith(CKR_USER_NOT_LOGGED_IN));
    await setPin(a, pin, next);
    // The old PIN is refused by the host now, the new one lets B in without a token login.
    const before = await logins(a);
    await expect(login(b, pin)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    await login(b, next);
    expect(await logins(a)).toMatchObject({ tokenLogins: before.tokenLogins, refusedLogins: before.refusedLogins + 1 });
    await setPin(b, next, pin);
    expect(host.log.join('\n')).not.toContain(next);
  }, 60_000);
  it("a mechanism's parameter names objects too: a client not logged in cannot name a private key there, nor another client's session object", async () => {
    const host = hosts[0]!;
    const pin = bed.tokens[0]!.userPin;
    const a = await app(host, 'app-a');
    const b = await app(host, 'app-b');
    const c = await app(host, 'app-c');
    await login(a, pin);
    await login(c, pin);
    // The EC key pair: B (not logged in) finds its public half only.
    const [publicKey] = await find(b, 'g-ec');
    const privateKey = (await find(a, 'g-ec')).find((h) => !h.equals(publicKey!));
    expect(publicKey).toBeDefined();
    expect(privateKey).toBeDefined();
    const secret = [
      { type: CKA_CLASS, value: 4 }, // CKO_SECRET_KEY
      { type: 0x100, value: 0x10 }, // CKA_KEY_TYPE: CKK_GENERIC_SECRET
      { type: CKA_TOKEN, value: false },
      { type: CKA_PRIVATE, value: false },
    ];
    /** An ECMQV derivation from the public key, whose parameter names `privateData` (the module would refuse ECMQV itself: CKR_MECHANISM_INVALID). */
    const ecmqv = (x: { client: RpcClient; session: Handle }, privateData: Handle) => {
      const parameter = { type: P.CK_PARAMS_ECMQV_DERIVE, kdf: P.CKD_NULL, publicData: Buffer.alloc(65, 4), privateDataLen: 32, privateData };
      return x.client.execute({ op: 'deriveKey', session: x.session, baseKey: publicKey!, mechanism: { mechanism: P.CKM_ECMQV_DERIVE, parameter }, template: secret });
    };
    await expect(ecmqv(b, privateKey!)).rejects.toMatchObject(refusedWith(CKR_USER_NOT_LOGGED_IN));
    // Not a creation: a GOST key wrap naming the private key as its parameter's `key`.
    const wrapParameter = { type: P.CK_PARAM_GOSTR3410_KEY_WRAP, wrapOID: Buffer.from([6, 1, 0]), key: privateKey! };
    const gostWrap = b.client.execute({ op: 'wrapKey', session: b.session, wrappingKey: publicKey!, key: publicKey!, mechanism: { mechanism: P.CKM_GOSTR3410_KEY_WRAP, parameter: wrapParameter } });
    await expect(gostWrap).rejects.toMatchObject(refusedWith(CKR_USER_NOT_LOGGED_IN));

    // A's session object, named by C (logged in itself) in a parameter or as what a creation copies.
    const object = await sessionObject(a, 'scratch-param');
    await expect(ecmqv(c, object)).rejects.toMatchObject(refusedWith(CKR_OBJECT_HANDLE_INVALID));
    await expect(c.client.execute({ op: 'copyObject', session: c.session, object, template: [] })).rejects.toMatchObject(refusedWith(CKR_OBJECT_HANDLE_INVALID));
    // A itself names it as it likes (here the module refuses the mechanism).
    await expect(ecmqv(a, object)).rejects.not.toMatchObject(refusedWith(CKR_OBJECT_HANDLE_INVALID));
    expect(await find(c, 'scratch-param')).toEqual([]);
  }, 60_000);

  it('a context-specific login comes only from a client logged in itself, and a wrong PIN never reaches the token', async () => {
    const host = hosts[0]!;
    const pin = bed.tokens[0]!.userPin;
    const a = await app(host, 'app-a');
    const b = await app(host, 'app-c');
    await login(a, pin);
    const contextLogin = (c: { client: RpcClient; session: Handle }, p: string) => c.client.execute({ op: 'contextLogin', session: c.session, pin: p });
    const before = await logins(a);
    await expect(contextLogin(b, pin)).rejects.toMatchObject(refusedWith(CKR_USER_NOT_LOGGED_IN));
    for (let i = 0; i < 3; i++) await expect(contextLogin(a, '00000000')).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    expect(await logins(a)).toMatchObject({ tokenLogins: before.tokenLogins, refusedLogins: before.refusedLogins + 3 });
    // The right PIN reaches the token, which answers as it does with no operation to authorise.
    await expect(contextLogin(a, pin)).rejects.toMatchObject({ wire: { rv: 0x91 } });
  });
});

describe('the guard after a PIN change made outside the host', () => {
  /**
   * A token as the guard drives it, whose PIN can change behind the host's back (another
   * host or tool on the same HSM; SoftHSM keeps the PIN it loaded per process, so a real
   * one cannot show it). It counts the logins that reach it; PINs never appear in output.
   */
  function scriptedToken(pin: string) {
    const token = { pin, loggedIn: false, reached: 0 };
    let sessions = 0;
    const refuse = (rv: number) => new CommandFailedError({ rv, fn: 'C_Login', message: 'refused' });
    const execute: GuardExecute = async (command) => {
      switch (command.op) {
        case 'openSession':
          return Buffer.alloc(8, ++sessions);
        case 'login':
          token.reached++;
          if (token.loggedIn) throw refuse(0x100); // CKR_USER_ALREADY_LOGGED_IN
          if (command.pin !== token.pin) throw refuse(CKR_PIN_INCORRECT);
          token.loggedIn = true;
          return undefined;
        case 'logout':
          token.loggedIn = false;
          return undefined;
        default:
          return undefined;
      }
    };
    return { token, guard: new ClientLoginGuard(execute, Buffer.alloc(8)) };
  }

  it('lets the new PIN reach the token once nobody is logged in, and a wrong PIN still never twice nor while anyone is logged in', async () => {
    const [oldPin, newPin, wrongPin] = ['11111111', '22222222', '33333333'];
    const { token, guard } = scriptedToken(oldPin);
    const client = async () => {
      const c = {};
      const session = (await guard.run(c, { op: 'openSession', slot: Buffer.alloc(8) })) as Handle;
      return {
        login: (pin: string) => guard.run(c, { op: 'login', session, userType: CKU_USER, pin }),
        logout: () => guard.run(c, { op: 'logout', session }),
      };
    };
    const [a, b, c, d] = [await client(), await client(), await client(), await client()];
    await a.login(oldPin);
    await a.logout();
    expect(token).toMatchObject({ reached: 1, loggedIn: false });

    // Changed outside the host: the host's hash of the old PIN must not refuse the new one.
    token.pin = newPin;
    await b.login(newPin);
    expect(token).toMatchObject({ reached: 2, loggedIn: true });
    await c.login(newPin); // the PIN that succeeded now: no token login
    expect(guard.stats).toMatchObject({ tokenLogins: 2, refusedLogins: 0, clientsLoggedIn: 2 });

    // While clients are logged in, another PIN never reaches the token (nor logs anyone out).
    await expect(d.login(oldPin)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    await expect(d.login(wrongPin)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    expect(token).toMatchObject({ reached: 2, loggedIn: true });
    expect(guard.stats).toMatchObject({ refusedLogins: 2, clientsLoggedIn: 2 });

    // Nobody logged in: a wrong PIN reaches the token once, and never again, even after a good login in between.
    await b.logout();
    await c.logout();
    expect(token.loggedIn).toBe(false);
    await expect(d.login(wrongPin)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    expect(token.reached).toBe(3);
    await expect(d.login(wrongPin)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    await b.login(newPin);
    await b.logout();
    await expect(d.login(wrongPin)).rejects.toMatchObject(refusedWith(CKR_PIN_INCORRECT));
    expect(token).toMatchObject({ reached: 4, loggedIn: false });
    expect(guard.stats).toMatchObject({ tokenLogins: 4, refusedLogins: 4, clientsLoggedIn: 0 });
  });
});
