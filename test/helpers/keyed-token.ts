/** One SoftHSM2 token holding the standard test keys (AES, HMAC, EC P-256, RSA-2048), for transport tests. */
import { provisionKeys, standardKeys, type ProvisionedKey } from '../../src/testbed/provision.js';
import { createTestbed, type Testbed, type TestbedToken } from '../../src/testbed/softhsm-testbed.js';
import type { InProcessTransportOptions } from '../../src/transport/in-process-transport.js';

/** A test bed of one token, the token, and its keys by kind (with their values, to check outputs). */
export interface KeyedToken {
  readonly bed: Testbed;
  readonly token: TestbedToken;
  readonly keys: Map<ProvisionedKey['kind'], ProvisionedKey>;
}

/** Creates the token and imports the standard keys, labelled `<prefix>-aes`, ... Dispose of `bed` after. */
export async function keyedToken(prefix: string): Promise<KeyedToken> {
  const bed = await createTestbed({ count: 1 });
  const list = standardKeys(prefix);
  provisionKeys(bed.tokens, list);
  return { bed, token: bed.tokens[0]!, keys: new Map(list.map((k) => [k.kind, k])) };
}

/** The options of a transport (in-process or host) to the token as a group's first member, with two threads. */
export function memberOptions(token: TestbedToken): InProcessTransportOptions {
  return {
    member: token.label,
    modulePath: token.modulePath,
    moduleEnv: token.env,
    token: { label: token.label },
    threads: 2,
    configPath: 'members[0]',
  };
}
