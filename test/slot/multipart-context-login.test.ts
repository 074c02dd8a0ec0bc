/**
 * The context-specific login of a multi-part operation (a key with
 * CKA_ALWAYS_AUTHENTICATE), as the pkcs11js facade drives it, on real member host
 * processes and SoftHSM2 tokens: the login reaches the member the operation is pinned to;
 * when that member's host dies between two parts, the replay on another member logs in
 * there too (after its Init), and the signature is right; a single-part call on the
 * authorised operation works, ECDSA included (nothing was returned before it).
 */
import { createHash, createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { HaGroup } from '../../src/group/ha-group.js';
import { HostTransport } from '../../src/host/host-transport.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import { multipartOf, type MultipartSession } from '../../src/slot/multipart-session.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { standardKeys } from '../../src/testbed/provision.js';
import { internalsOf } from '../../src/testing.js';
import { hostGroups } from '../helpers/host-groups.js';
import { until } from '../helpers/until.js';

const A = pkcs11js;
const hosts = hostGroups(standardKeys('mc'), { initDomain: true });

/** The pid of the host of the primary (where multi-part operations run). */
function primaryPid(g: HaGroup): number {
  const t = internalsOf(g).membership.primary!.transport;
  if (!(t instanceof HostTransport) || t.pid === undefined) throw new Error('the primary has no host process');
  return t.pid;
}

interface Opened {
  readonly g: HaGroup;
  readonly session: VirtualSession;
  readonly multipart: MultipartSession;
  readonly pin: string;
}

async function open(transport: 'host' | 'in-process' = 'host'): Promise<Opened> {
  const g = await hosts.open({ members: hosts.bed.memberConfigs(), transport, deadlineMs: 120_000, recovery: { maxAttempts: 0 } });
  const session = g.slot.openSession();
  const pin = hosts.bed.tokens[0]!.userPin;
  await session.login(pin);
  return { g, session, multipart: multipartOf(session)!, pin };
}

/** A key pair whose private half needs a context-specific login for each use; the public half for node:crypto. */
async function alwaysAuthenticated(session: VirtualSession, mechanism: 'RSA_PKCS_KEY_PAIR_GEN' | 'EC_KEY_PAIR_GEN'): Promise<{ privateKey: number; publicKey: KeyObject }> {
  const rsa = mechanism === 'RSA_PKCS_KEY_PAIR_GEN';
  const pair = await session.generateKeyPair(
    mechanism,
    rsa ? { token: true, verify: true, modulusBits: 2048, publicExponent: 65537 } : { token: true, verify: true, ecParams: Buffer.from('06082a8648ce3d030107', 'hex') },
    [
      { type: A.CKA_TOKEN, value: true },
      { type: A.CKA_PRIVATE, value: true },
      { type: A.CKA_SENSITIVE, value: true },
      { type: A.CKA_SIGN, value: true },
      { type: A.CKA_ALWAYS_AUTHENTICATE, value: true },
    ],
  );
  if (rsa) {
    const [n, e] = await session.getAttributeValues(pair.publicKey, [A.CKA_MODULUS, A.CKA_PUBLIC_EXPONENT]);
    const jwk = { kty: 'RSA', n: n!.value!.toString('base64url'), e: e!.value!.toString('base64url') };
    return { privateKey: pair.privateKey, publicKey: createPublicKey({ key: jwk, format: 'jwk' }) };
  }
  const [point] = await session.getAttributeValues(pair.publicKey, [A.CKA_EC_POINT]);
  // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (04 || x || y).
  const xy = point!.value!.subarray(point!.value!.length - 64);
  const jwk = { kty: 'EC', crv: 'P-256', x: xy.subarray(0, 32).toString('base64url'), y: xy.subarray(32).toString('base64url') };
  return { privateKey: pair.privateKey, publicKey: createPublicKey({ key: jwk, format: 'jwk' }) };
}

describe('the context-specific login of a multi-part operation', () => {
  it('is given again after the Init of the replay when the pinned member host is killed between two parts', async () => {
    const o = await open();
    const { session, multipart } = o;
    const { privateKey, publicKey } = await alwaysAuthenticated(session, 'RSA_PKCS_KEY_PAIR_GEN');
    const failures: string[] = [];
    o.g.on('memberFailed', (e) => failures.push(e.member));
    const parts = [Buffer.from('before '), Buffer.from('the failure, '), Buffer.from('after it')];
    await until(() => o.g.status().members.every((m) => m.state.kind === 'active'), 'every member to serve', 30_000);
    const pinned = internalsOf(o.g).membership.primary!.name;
    await session.signInit('SHA256_RSA_PKCS', privateKey);
    await multipart.authorise('sign', o.pin);
    await session.signUpdate(parts[0]!);
    await session.signUpdate(parts[1]!);
    process.kill(primaryPid(o.g), 'SIGKILL');
    await session.signUpdate(parts[2]!);
    const signature = await session.signFinal();
    expect(nodeVerify('sha256', Buffer.concat(parts), publicKey, signature)).toBe(true);
    // The operation's member failed, and only it: the replay's login was accepted elsewhere.
    expect(failures).toEqual([pinned]);
  }, 120_000);

  it.each(['host', 'in-process'] as const)('over the %s transport: is refused for a wrong PIN without ending the operation; a single-part ECDSA signature on the authorised operation verifies', async (transport) => {
    const o = await open(transport);
    const { session, multipart } = o;
    const { privateKey, publicKey } = await alwaysAuthenticated(session, 'EC_KEY_PAIR_GEN');
    const message = Buffer.from('ecdsa, once');
    // CKM_ECDSA signs a digest (SoftHSM 2.6 has no CKM_ECDSA_SHA256).
    const data = createHash('sha256').update(message).digest();
    await session.signInit('ECDSA', privateKey);
    await expect(multipart.authorise('sign', 'not-the-pin')).rejects.toMatchObject({ ckr: 'CKR_PIN_INCORRECT' });
    await multipart.authorise('sign', o.pin);
    const signature = (await multipart.once('sign', data)) as Buffer;
    expect(nodeVerify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
    expect(multipart.open).toEqual([]);
    // The login belongs to the operation: a new one needs its own.
    await session.signInit('ECDSA', privateKey);
    await expect(multipart.once('sign', data)).rejects.toMatchObject({ ckr: 'CKR_USER_NOT_LOGGED_IN' });
    // With no operation open there is nothing to authorise.
    await expect(multipart.authorise('sign', o.pin)).rejects.toMatchObject({ ckr: 'CKR_OPERATION_NOT_INITIALIZED' });
  }, 120_000);

  it('an authorised single-part ECDSA signature is taken up elsewhere, with the login, when its member host is killed before it', async () => {
    const o = await open();
    const { session, multipart } = o;
    const { privateKey, publicKey } = await alwaysAuthenticated(session, 'EC_KEY_PAIR_GEN');
    const failures: string[] = [];
    o.g.on('memberFailed', (e) => failures.push(e.member));
    await until(() => o.g.status().members.every((m) => m.state.kind === 'active'), 'every member to serve', 30_000);
    const pinned = internalsOf(o.g).membership.primary!.name;
    const message = Buffer.from('ecdsa, after a failure');
    await session.signInit('ECDSA', privateKey);
    await multipart.authorise('sign', o.pin);
    process.kill(primaryPid(o.g), 'SIGKILL');
    // Random signatures are not replayed once parts went in; with none, any member's will do.
    const signature = (await multipart.once('sign', createHash('sha256').update(message).digest())) as Buffer;
    expect(nodeVerify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
    expect(failures).toEqual([pinned]);
  }, 120_000);
});
