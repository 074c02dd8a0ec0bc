/**
 * placeReplica on real SoftHSM2 tokens: a token replica is made as a session object and
 * copied to the token (one transaction write in SoftHSM instead of one write per default
 * attribute), leaving no session object behind; objects that may not be copied or
 * destroyed are made on the token directly; a copy the module refuses falls back to that,
 * and a member fault under the copy is the caller's to settle. The refusal and the fault
 * come from a wrapper around the executor (a token does not give them on demand).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { Member } from '../../src/member/member.js';
import { MemberUnreachableError, Pkcs11Error } from '../../src/errors/ha-error.js';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import type { Handle, WireAttribute } from '../../src/pkcs11/commands.js';
import { toMechanism } from '../../src/pkcs11/mechanism-table.js';
import { toRawTemplate } from '../../src/pkcs11/template-codec.js';
import { readMemberDomain } from '../../src/replication/domain-key.js';
import { placeReplica, pooled, readReplicaSource, type Exec, type ReplicaSource } from '../../src/replication/replica-copy.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';

const A = pkcs11js;
let bed: Testbed;
let group: HaGroup;
let source: Member;
let target: Member;
let targetDomain: Handle;

beforeAll(async () => {
  bed = await createTestbed({ count: 2 });
  await HaGroup.initDomain({ members: bed.memberConfigs() });
  group = await HaGroup.open({ members: bed.memberConfigs(), transport: 'in-process' });
  await group.slot.openSession().login(bed.tokens[0]!.userPin);
  [source, target] = internalsOf(group).members as [Member, Member];
  const domain = await readMemberDomain(target);
  if (domain.kind !== 'key') throw new Error('no domain key on the target');
  targetDomain = domain.handle;
});
afterAll(async () => {
  await group?.close();
  await bed?.dispose();
});

/** The executor, recording the operations it runs; `refuse` turns one operation's answer into an error. */
function recording(refuse?: { op: string; error: Error }): { exec: Exec; ops: string[] } {
  const ops: string[] = [];
  const exec: Exec = (member, build) => {
    // Commands are plain data: built once with a stand-in session to see which one this is.
    const op = build(Buffer.alloc(8)).op;
    ops.push(op);
    if (refuse !== undefined && op === refuse.op) return Promise.reject(refuse.error);
    return pooled(member, build);
  };
  return { exec, ops };
}

/** A session EC key pair on the source, read and wrapped as a creation reads it. */
async function sourceKey(extra: WireAttribute[] = []): Promise<ReplicaSource> {
  const sourceDomain = await readMemberDomain(source);
  if (sourceDomain.kind !== 'key') throw new Error('no domain key on the source');
  const label = `rc-${randomBytes(4).toString('hex')}`;
  const pair = await source.run<'generateKeyPair'>((session) => ({
    op: 'generateKeyPair',
    session,
    mechanism: toMechanism('EC_KEY_PAIR_GEN'),
    publicTemplate: toRawTemplate({ token: false, curve: 'P-256', verify: true, label }),
    privateTemplate: [...toRawTemplate({ token: true, sign: true, sensitive: true, extractable: true, wrapWithTrusted: true, label, id: Buffer.from(label) }), ...extra],
  }));
  return readReplicaSource(source, pair.privateKey, sourceDomain.handle);
}

/** Objects on the target that are not token objects (what a copy could leave behind). */
async function sessionObjects(): Promise<number> {
  const all = await target.run<'findObjects'>((session) => ({ op: 'findObjects', session, template: [] }));
  const tokens = await target.run<'findObjects'>((session) => ({ op: 'findObjects', session, template: [{ type: A.CKA_TOKEN, value: true }] }));
  return all.length - tokens.length;
}

async function expectWorkingTokenKey(handle: Handle, copy: ReplicaSource): Promise<void> {
  const [token, label] = await target.run<'getAttributes'>((session) => ({ op: 'getAttributes', session, object: handle, types: [A.CKA_TOKEN, A.CKA_LABEL] }));
  expect(token?.value?.[0]).toBe(1);
  expect(label?.value?.toString()).toBe(copy.read.find((a) => a.type === A.CKA_LABEL)?.value?.toString());
  const signature = await target.run<'sign'>((session) => ({ op: 'sign', session, mechanism: toMechanism('ECDSA'), key: handle, data: Buffer.alloc(32, 3) }));
  expect(signature).toHaveLength(64);
  await target.run<'destroyObject'>((session) => ({ op: 'destroyObject', session, object: handle }));
}

describe('placeReplica', () => {
  it('makes a token key as a session object, copies it to the token and destroys the session object', async () => {
    const copy = await sourceKey();
    const before = await sessionObjects();
    const { exec, ops } = recording();
    const handle = await placeReplica(exec, target, targetDomain, copy.wrapped, copy.template);
    expect(ops).toEqual(['unwrapKey', 'copyObject', 'destroyObject']);
    expect(await sessionObjects()).toBe(before);
    await expectWorkingTokenKey(handle, copy);
  });

  it.each([
    ['CKA_COPYABLE', A.CKA_COPYABLE],
    ['CKA_DESTROYABLE', A.CKA_DESTROYABLE],
  ])('makes a key with %s false on the token directly', async (_, type) => {
    const copy = await sourceKey([{ type, value: false }]);
    expect(copy.template.find((a) => a.type === type)?.value).toBeDefined();
    const { exec, ops } = recording();
    const handle = await placeReplica(exec, target, targetDomain, copy.wrapped, copy.template);
    expect(ops).toEqual(['unwrapKey']);
    if (type === A.CKA_DESTROYABLE) {
      const [token] = await target.run<'getAttributes'>((session) => ({ op: 'getAttributes', session, object: handle, types: [A.CKA_TOKEN] }));
      expect(token?.value?.[0]).toBe(1);
    } else await expectWorkingTokenKey(handle, copy);
  });

  it('falls back to the token directly when the module refuses the copy, and leaves no session object', async () => {
    const copy = await sourceKey();
    const before = await sessionObjects();
    const refused = new Pkcs11Error('CKR_ACTION_PROHIBITED', 0x1b, 'C_CopyObject', target.name, 'caller');
    const { exec, ops } = recording({ op: 'copyObject', error: refused });
    const handle = await placeReplica(exec, target, targetDomain, copy.wrapped, copy.template);
    expect(ops).toEqual(['unwrapKey', 'copyObject', 'destroyObject', 'unwrapKey']);
    expect(await sessionObjects()).toBe(before);
    await expectWorkingTokenKey(handle, copy);
  });

  it('a member fault under the copy is thrown: whether the copy was made is the caller\'s to settle', async () => {
    const copy = await sourceKey();
    const fault = new MemberUnreachableError(target.name, 'connection lost');
    const { exec, ops } = recording({ op: 'copyObject', error: fault });
    await expect(placeReplica(exec, target, targetDomain, copy.wrapped, copy.template)).rejects.toBe(fault);
    expect(ops).toEqual(['unwrapKey', 'copyObject']);
  });
});
