/**
 * A multi-part decryption made in place (the output buffer is the input buffer, as PKCS#11
 * allows) on in-process members, which write straight into the caller's buffer: when its
 * member fails, the takeover must chain on the ciphertext, not on the plaintext written
 * over it. Real SoftHSM2 tokens; the member's transport is closed under the operation.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { HaGroup } from '../../src/group/ha-group.js';
import { provisionKeys, standardKeys } from '../../src/testbed/provision.js';
import { createTestbed, type Testbed } from '../../src/testbed/softhsm-testbed.js';
import { internalsOf } from '../../src/testing.js';
import { until } from '../helpers/until.js';

const KEYS = standardKeys('ip');
const AES = (KEYS.find((k) => k.kind === 'aes') as { value: Buffer }).value;
let bed: Testbed;
let group: HaGroup;

beforeAll(async () => {
  bed = await createTestbed({ count: 2 });
  provisionKeys(bed.tokens, KEYS);
  group = await HaGroup.open({ members: bed.memberConfigs(), transport: 'in-process', recovery: { intervalMs: 50 } });
}, 60_000);
afterAll(async () => {
  await group?.close();
  await bed?.dispose();
});

it('an AES-CBC-PAD decryption in place is taken up on the other member with the right plaintext', async () => {
  const session = group.slot.openSession();
  await session.login(bed.tokens[0]!.userPin);
  const [key] = await session.findObjects({ label: 'ip-aes' });
  const iv = randomBytes(16);
  const data = randomBytes(5000);
  const c = createCipheriv('aes-256-cbc', AES, iv);
  const sealed = Buffer.concat([c.update(data), c.final()]);
  const parts = [sealed.subarray(0, 2003), sealed.subarray(2003, 4096), sealed.subarray(4096)];
  // The output goes where the input is, with room for what the token held back before.
  const inPlace = async (p: Buffer): Promise<Buffer> => {
    const buffer = Buffer.alloc(p.length + 32);
    p.copy(buffer);
    return Buffer.from(await session.decryptUpdate(buffer.subarray(0, p.length), buffer));
  };
  const served = () => group.status().members.map((m) => m.served);

  await session.decryptInit({ name: 'AES_CBC_PAD', iv }, key!);
  const before = served();
  const out = [await inPlace(parts[0]!), await inPlace(parts[1]!)];
  const pinned = served().findIndex((n, i) => n > before[i]!);
  expect(pinned).toBeGreaterThanOrEqual(0);
  await internalsOf(group).members[pinned]!.transport.close();
  out.push(await inPlace(parts[2]!), await session.decryptFinal());
  expect(Buffer.concat(out).equals(data)).toBe(true);
  expect(group.status().members[pinned]!.state.kind).not.toBe('active');
  await until(() => group.status().members.every((m) => m.state.kind === 'active'), 'the member to come back', 30_000);
});
