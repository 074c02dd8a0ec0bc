/**
 * BackingSessions: a virtual session's own sessions on a member, several at once, each
 * call alone on its session, and per session object which session holds it. The member
 * is a stand-in whose calls finish when the test says, so that overlap can be held open
 * on demand; what matters here is which session each call is sent on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { internalsOf } from '../../src/testing.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { InProcessTransport } from '../../src/transport/in-process-transport.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import type { VirtualObject } from '../../src/catalog/catalog.js';
import type { Member } from '../../src/member/member.js';
import type { Command, Handle } from '../../src/pkcs11/commands.js';
import { BackingSessions, MAX_BACKING_SESSIONS } from '../../src/slot/session-objects.js';

const flush = () => new Promise<void>((r) => setImmediate(r));
const handle = (n: number): Handle => {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(n, 0);
  return b;
};

/** A stand-in member: sessions are numbered; each call waits until `finishAll()`; two calls at once on one session fail the test. */
function standIn(index = 0) {
  let sessions = 0;
  let objects = 1000;
  const busy = new Set<number>();
  const pending: (() => void)[] = [];
  const log: { op: string; session: number }[] = [];
  const m = {
    name: `member-${index + 1}`,
    index,
    transport: { kind: 'stand-in' } as object,
    state: { kind: 'active' },
    openSession: async () => handle(++sessions),
    runOn: async (command: Command) => {
      const s = (command as { session: Handle }).session.readUInt32LE(0);
      log.push({ op: command.op, session: s });
      if (command.op === 'closeSession') return undefined;
      expect(busy.has(s), `two calls at once on session ${s}`).toBe(false);
      busy.add(s);
      await new Promise<void>((r) => pending.push(r));
      busy.delete(s);
      return command.op === 'generateKeyPair' ? { publicKey: handle(++objects), privateKey: handle(++objects) } : handle(++objects);
    },
  };
  return {
    member: m as unknown as Member,
    raw: m,
    log,
    opened: () => sessions,
    inFlight: () => busy.size,
    finishAll: async () => {
      for (const r of pending.splice(0)) r();
      await flush();
    },
  };
}

const generate = (b: BackingSessions, member: Member) =>
  b.exec<'generateKey'>(member, (session) => ({ op: 'generateKey', session, mechanism: { mechanism: 0x1080 }, template: [] }));

const objectOn = (index: number, h: Handle, n: number): VirtualObject => ({ handle: n, identity: {} as VirtualObject['identity'], holders: new Map([[index, h]]) });

describe('BackingSessions', () => {
  it('runs calls at once on separate sessions of one member, up to the maximum, and the rest as sessions free up', async () => {
    const m = standIn();
    const b = new BackingSessions();
    const calls = Array.from({ length: MAX_BACKING_SESSIONS + 3 }, () => generate(b, m.member));
    await flush();
    expect(m.inFlight()).toBe(MAX_BACKING_SESSIONS);
    expect(m.opened()).toBe(MAX_BACKING_SESSIONS);
    while (m.inFlight() > 0) await m.finishAll();
    const made = await Promise.all(calls);
    expect(new Set(made.map((h) => h.toString('hex'))).size).toBe(made.length);
    // No more sessions than the maximum, ever.
    expect(m.opened()).toBe(MAX_BACKING_SESSIONS);
    expect(b.openOn(m.member)).toBe(MAX_BACKING_SESSIONS);
  });

  it('one call at a time opens one session only', async () => {
    const m = standIn();
    const b = new BackingSessions();
    for (let i = 0; i < 3; i++) {
      const call = generate(b, m.member);
      await flush();
      await m.finishAll();
      await call;
    }
    expect(m.opened()).toBe(1);
  });

  it('recovery keeps the sessions that still hold a live object and drops the others; close closes what is kept', async () => {
    const m = standIn();
    const b = new BackingSessions(2);
    const calls = [generate(b, m.member), generate(b, m.member)];
    await flush();
    await m.finishAll();
    const [h1, h2] = await Promise.all(calls);
    const session1 = m.log.find((e) => e.op === 'generateKey')!.session;
    const o1 = objectOn(0, h1!, 1);
    const o2 = objectOn(0, h2!, 2);
    b.own(o1);
    b.own(o2);
    // The member came back on the same transport and still holds o1 only.
    b.dropStale(m.member, (o) => o === o1);
    expect(b.openOn(m.member)).toBe(1);
    await b.closeAll();
    expect(m.log.filter((e) => e.op === 'closeSession').map((e) => e.session)).toEqual([session1]);
  });

  it('after a new transport every session is dropped (its handle never sent there), and new ones are opened', async () => {
    const m = standIn();
    const b = new BackingSessions();
    const call = generate(b, m.member);
    await flush();
    await m.finishAll();
    b.own(objectOn(0, await call, 1));
    m.raw.transport = { kind: 'another' };
    b.dropStale(m.member, () => true);
    expect(b.openOn(m.member)).toBe(0);
    const next = generate(b, m.member);
    await flush();
    await m.finishAll();
    await next;
    const used = m.log.filter((e) => e.op === 'generateKey').map((e) => e.session);
    expect(used).toEqual([1, 2]);
    await b.closeAll();
    expect(m.log.filter((e) => e.op === 'closeSession').map((e) => e.session)).toEqual([2]);
  });

  it('a call waiting for a session when its sessions are dropped runs on a new one', async () => {
    const m = standIn();
    const b = new BackingSessions(1);
    const first = generate(b, m.member);
    const second = generate(b, m.member);
    await flush();
    expect(m.inFlight()).toBe(1);
    m.raw.transport = { kind: 'another' };
    b.dropStale(m.member, () => false);
    await flush();
    // The waiting call did not take the dropped session: it opened one on the new transport.
    expect(m.inFlight()).toBe(2);
    while (m.inFlight() > 0) await m.finishAll();
    await Promise.all([first, second]);
    expect(m.log.filter((e) => e.op === 'generateKey').map((e) => e.session)).toEqual([1, 2]);
  });
});

describe('session key management on an in-process member (inline calls)', () => {
  let bed: Testbed;
  let group: HaGroup;
  let session: VirtualSession;
  let transport: InProcessTransport;
  const P256 = Buffer.from('06082a8648ce3d030107', 'hex');

  beforeAll(async () => {
    bed = await createTestbed({ count: 1 });
    group = await HaGroup.open({ members: bed.memberConfigs(), transport: 'in-process' });
    session = group.slot.openSession();
    await session.login(bed.tokens[0]!.userPin);
    transport = internalsOf(group).members[0]!.transport as InProcessTransport;
  });
  afterAll(async () => {
    await group?.close();
    await bed?.dispose();
  });

  it('an EC session key pair is made, read and destroyed on the calling thread; a token pair goes to the worker threads', async () => {
    // The session's own session on the member is opened on first use (on a thread): open it first.
    const first = await session.generateKeyPair('EC_KEY_PAIR_GEN', { ecParams: P256, token: false, verify: true, label: 'first' }, { token: false, sign: true, label: 'first' });
    await session.destroyObject(first.privateKey);
    await session.destroyObject(first.publicKey);
    // Which commands ran on this thread (the transport makes inline calls through runHere).
    const inline: string[] = [];
    const runHere = transport.runHere.bind(transport);
    transport.runHere = ((command, output) => {
      inline.push(command.op);
      return runHere(command, output);
    }) as typeof transport.runHere;
    try {
      const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { ecParams: P256, token: false, verify: true, label: 'inline' }, { token: false, sign: true, label: 'inline' });
      // Alone in the group, nothing is read: the identity comes from the templates.
      expect(inline).toEqual(['generateKeyPair']);
      const signature = await session.sign('ECDSA', pair.privateKey, Buffer.alloc(32, 1));
      expect(await session.verify('ECDSA', pair.publicKey, Buffer.alloc(32, 1), signature)).toBe(true);
      // A search (on the threads) finds both halves as the handles the creation gave.
      expect((await session.findObjects({ label: 'inline' })).sort()).toEqual([pair.publicKey, pair.privateKey].sort());
      inline.length = 0;
      await session.destroyObject(pair.privateKey);
      await session.destroyObject(pair.publicKey);
      expect(inline).toEqual(['destroyObject', 'destroyObject']);
      expect(await session.findObjects({ label: 'inline' })).toEqual([]);
    } finally {
      transport.runHere = runHere;
    }

    const beforeToken = transport.calls;
    const token = await session.generateKeyPair('EC_KEY_PAIR_GEN', { ecParams: P256, token: true, verify: true, label: 'threads' }, { token: true, sign: true, label: 'threads' });
    // The generation (token writes) and the reads of token objects.
    expect(transport.calls.threads - beforeToken.threads).toBeGreaterThanOrEqual(3);
    await session.destroyObject(token.privateKey);
    await session.destroyObject(token.publicKey);
  });
});

describe('session keys made while the group has one member (identity from the template, read when needed)', () => {
  let bed: Testbed;
  const P256 = Buffer.from('06082a8648ce3d030107', 'hex');

  beforeAll(async () => {
    bed = await createTestbed({ count: 2 });
    await HaGroup.initDomain({ members: bed.memberConfigs(), transport: 'in-process' });
  });
  afterAll(async () => {
    await bed?.dispose();
  });

  it('are named as a read would name them, and a search after a logout finds the public half under the same handle, its fingerprint read then', async () => {
    const group = await HaGroup.open({ members: bed.memberConfigs().slice(0, 1), transport: 'in-process' });
    try {
      const session = group.slot.openSession();
      await session.login(bed.tokens[0]!.userPin);
      const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { ecParams: P256, token: false, verify: true, label: 'alone' }, { token: false, private: false, sign: true, label: 'alone', id: Buffer.from([7]) });
      expect(group.describeObject(pair.publicKey)!.fingerprint).toBeUndefined();
      // A search reads the identity of what it does not know: a second object with the same name is told apart.
      const other = await session.createObject({ class: 'publicKey', keyType: 'ec', ecParams: P256, ecPoint: Buffer.concat([Buffer.from([4, 65, 4]), Buffer.alloc(64, 9)]), token: false, label: 'alone' });
      expect((await session.findObjects({ label: 'alone' })).sort()).toEqual([pair.publicKey, pair.privateKey, other].sort());
      await session.logout();
      await session.login(bed.tokens[0]!.userPin);
      // The holders were forgotten at logout; both public keys are found again, each as itself.
      expect((await session.findObjects({ label: 'alone', class: 'publicKey' })).sort()).toEqual([pair.publicKey, other].sort());
      expect(group.describeObject(pair.publicKey)!.fingerprint).toMatch(/^ec-point:/);
      const digest = Buffer.alloc(32, 3);
      expect(await session.verify('ECDSA', pair.publicKey, digest, await session.sign('ECDSA', pair.privateKey, digest))).toBe(true);
    } finally {
      await group.close();
    }
  });

  it('are read from their member when a second member joins, and the copies serve once the first member is gone', async () => {
    const group = await HaGroup.open({ members: bed.memberConfigs().slice(0, 1), transport: 'in-process' });
    try {
      const session = group.slot.openSession();
      await session.login(bed.tokens[0]!.userPin);
      const pair = await session.generateKeyPair('EC_KEY_PAIR_GEN', { ecParams: P256, token: false, verify: true, label: 'joined' }, { token: false, sign: true, label: 'joined' });
      expect(group.describeObject(pair.privateKey)!.fingerprint).toBeUndefined();
      const joined = await group.addMember(bed.memberConfigs()[1]!);
      expect(group.describeObject(pair.privateKey)).toMatchObject({ holders: ['member-1', joined], fingerprint: expect.stringMatching(/^domain-wrap:/) });
      expect(group.describeObject(pair.publicKey)).toMatchObject({ holders: ['member-1', joined], fingerprint: expect.stringMatching(/^ec-point:/) });
      await group.removeMember('member-1');
      const digest = Buffer.alloc(32, 5);
      expect(await session.verify('ECDSA', pair.publicKey, digest, await session.sign('ECDSA', pair.privateKey, digest))).toBe(true);
      await session.destroyObject(pair.privateKey);
      await session.destroyObject(pair.publicKey);
      expect(await session.findObjects({ label: 'joined' })).toEqual([]);
    } finally {
      await group.close();
    }
  });
});
