/**
 * Review of 9b209c5 (staged key creation, keyCreation: 'parallel') on real SoftHSM2
 * members. Each test showed a defect of the reviewed code and now guards its fix; the
 * controls show the primary-first behaviour the fixes keep.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import type { GroupConfig } from '../../src/group/group-config.js';
import type { Command, CommandName, CommandResult } from '../../src/pkcs11/commands.js';
import { pkcs11js } from '../../src/pkcs11/pkcs11js.js';
import { toRawTemplate } from '../../src/pkcs11/templates.js';
import type { VirtualSession } from '../../src/slot/virtual-session.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import type { TokenInfo, Transport } from '../../src/transport/transport.js';
import { FaultTransport } from '../helpers/fault-transport.js';

/** Runs a chosen command for real, then drops the connection before its answer arrives. */
class ReplyLossTransport implements Transport {
  readonly kind: string;
  readonly #lose = new Set<CommandName>();

  constructor(readonly fault: FaultTransport) {
    this.kind = fault.kind;
  }

  loseReplyOf(op: CommandName): void {
    this.#lose.add(op);
  }

  connect(): Promise<TokenInfo> {
    return this.fault.connect();
  }

  get pending(): number {
    return this.fault.pending;
  }

  onDisconnect(listener: (error: Error) => void): void {
    this.fault.onDisconnect(listener);
  }

  close(): Promise<void> {
    return this.fault.close();
  }

  async execute<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    if (!this.#lose.delete(command.op)) return this.fault.execute(command);
    await this.fault.execute(command);
    const error = new Error(`connection lost before the answer to ${command.op} (injected)`);
    this.fault.disconnect(error);
    throw error;
  }
}

let bed: Testbed;
let group: HaGroup | undefined;
const transports: ReplyLossTransport[] = [];

beforeAll(async () => {
  bed = await createTestbed({ count: 3 });
  await HaGroup.initDomain({ members: bed.memberConfigs(), transport: 'in-process' });
}, 60_000);
afterEach(async () => {
  await group?.close();
  group = undefined;
});
afterAll(async () => {
  await bed?.dispose();
});

async function openGroup(extra: Partial<GroupConfig> = {}): Promise<{ group: HaGroup; session: VirtualSession }> {
  group = await HaGroup.open({
    members: bed.memberConfigs(),
    recovery: { maxAttempts: 0 },
    transportFactory: (m) => (transports[m.index] = new ReplyLossTransport(FaultTransport.inProcess(m))),
    ...extra,
  });
  const session = group.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);
  return { group, session };
}

/** A token X.509 certificate object (SoftHSM does not parse CKA_VALUE). */
function certificate(label: string) {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_CERTIFICATE },
    { type: pkcs11js.CKA_CERTIFICATE_TYPE, value: pkcs11js.CKC_X_509 },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_SUBJECT, value: Buffer.from('3000', 'hex') },
    { type: pkcs11js.CKA_VALUE, value: Buffer.from('3003020100', 'hex') },
  ];
}

describe('staged creation (review of 9b209c5)', () => {
  it('control: primary-first creates a token certificate (the primary holds it, the others owe copies they cannot make)', async () => {
    const { group: g, session } = await openGroup({ keyCreation: 'primary-first' });
    const cert = await session.createObject(certificate('rv-cert-pf'));
    expect(g.describeObject(cert)!.holders).toEqual(['member-1']);
  });

  it('a token certificate is made primary-first under the default keyCreation (the replica template cannot make one, so it is never staged)', async () => {
    const { group: g, session } = await openGroup();
    const cert = await session.createObject(certificate('rv-cert-st'));
    expect(g.describeObject(cert)!.holders).toContain('member-1');
  });

  it('a raw CKA_DESTROYABLE=false (a Buffer [0]) is not staged: no session object stays on the creator', async () => {
    const { group: g, session } = await openGroup();
    const template = [
      ...toRawTemplate({ label: 'rv-nd-raw', valueLen: 32, token: true, encrypt: true, decrypt: true }),
      { type: pkcs11js.CKA_DESTROYABLE, value: Buffer.from([0]) },
    ];
    await session.generateKey('AES_KEY_GEN', template);
    const left = await g.members[0]!.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: toRawTemplate({ label: 'rv-nd-raw', token: false }) }));
    expect(left).toEqual([]);
  });

  it('a creator that writes its own token copy and loses the answer, in a creation rolled back for minReplicas, owes its deletion: after recovery the removed key is not offered', async () => {
    const { group: g, session } = await openGroup({ minReplicas: 2 });
    // member-3 is down: 2 serve, minReplicas 2 is met before creating.
    transports[2]!.fault.disconnect();
    expect(g.members[2]!.state.kind).toBe('failed');
    // The creator's (member-1) own token copy is its only unwrapKey in a staged creation.
    transports[0]!.loseReplyOf('unwrapKey');
    await expect(session.generateKey('AES_KEY_GEN', { label: 'rv-ghost', valueLen: 32, token: true, encrypt: true, decrypt: true })).rejects.toThrow(/fewer than minReplicas/);
    expect(g.members[0]!.state.kind).toBe('failed');
    expect(g.slot.context.journal.tentatives('member-1')).toEqual([]);
    // The group said the object was removed again; the creator comes back.
    expect(await g.recover('member-1')).toBe(true);
    expect(await session.findObjects({ label: 'rv-ghost' })).toEqual([]);
  });

  it('control: primary-first creates a CKA_MODIFIABLE=false token key (the primary holds it; the replicas fail with CKR_ATTRIBUTE_READ_ONLY and stay owed)', async () => {
    const { group: g, session } = await openGroup({ keyCreation: 'primary-first' });
    const key = await session.generateKey('AES_KEY_GEN', { label: 'rv-nm-pf', valueLen: 32, token: true, encrypt: true, modifiable: false });
    expect(g.describeObject(key)!.holders).toEqual(['member-1']);
  });

  it('a CKA_MODIFIABLE=false token key is made primary-first under the default keyCreation (SoftHSM refuses it in an unwrap template)', async () => {
    const { group: g, session } = await openGroup();
    const key = await session.generateKey('AES_KEY_GEN', { label: 'rv-nm', valueLen: 32, token: true, encrypt: true, modifiable: false });
    expect(g.describeObject(key)!.holders).toContain('member-1');
  });

  it('a replica target that writes its copy and loses the answer owes its deletion when the creation is rolled back for minReplicas (primary-first)', async () => {
    const { group: g, session } = await openGroup({ minReplicas: 3, keyCreation: 'primary-first' });
    transports[1]!.loseReplyOf('unwrapKey');
    transports[2]!.fault.failNext('unwrapKey', { rv: pkcs11js.CKR_DEVICE_MEMORY });
    await expect(session.generateKey('AES_KEY_GEN', { label: 'rv-ghost-pf', valueLen: 32, token: true, encrypt: true, decrypt: true })).rejects.toThrow(/fewer than minReplicas/);
    expect(g.members[1]!.state.kind).toBe('failed');
    expect(await g.recover('member-2')).toBe(true);
    expect(await session.findObjects({ label: 'rv-ghost-pf' })).toEqual([]);
  });

  it('a staged creation whose creator refuses its own copy is made again primary-first, and leaves no staged object behind', async () => {
    const { group: g, session } = await openGroup();
    // The creator's only unwrap in a staged creation is its own copy.
    transports[0]!.fault.failNext('unwrapKey', { rv: pkcs11js.CKR_TEMPLATE_INCONSISTENT });
    const key = await session.generateKey('AES_KEY_GEN', { label: 'rv-fallback', valueLen: 32, token: true, encrypt: true, decrypt: true });
    expect(g.describeObject(key)!.holders).toEqual(['member-1', 'member-2', 'member-3']);
    expect(g.status().owed).toEqual({});
    // Primary-first: the creator made the token object itself (CKA_LOCAL), the others copied it.
    const local = await Promise.all(
      g.members.map(async (m) => {
        const [found] = await m.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: toRawTemplate({ label: 'rv-fallback', token: true }) }));
        const [attribute] = await m.run<'getAttributes'>((s) => ({ op: 'getAttributes', session: s, object: found!, types: [pkcs11js.CKA_LOCAL] }));
        return attribute!.value?.[0] === 1;
      }),
    );
    expect(local).toEqual([true, false, false]);
    const left = await g.members[0]!.run<'findObjects'>((s) => ({ op: 'findObjects', session: s, template: toRawTemplate({ label: 'rv-fallback', token: false }) }));
    expect(left).toEqual([]);
    expect(await session.findObjects({ label: 'rv-fallback' })).toEqual([key]);
  });
});
