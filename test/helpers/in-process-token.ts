/**
 * One SoftHSM2 token with the standard test keys, reached through InProcessTransports:
 * the fixture of the in-process transport tests.
 */
import { afterAll, beforeAll } from 'vitest';
import { pkcs11js } from '../../src/native/pkcs11js.js';
import type { Handle } from '../../src/pkcs11/commands.js';
import { toRawTemplate } from '../../src/pkcs11/template-codec.js';
import type { ProvisionedKey } from '../../src/testbed/provision.js';
import type { Testbed, TestbedToken } from '../../src/testbed/softhsm-testbed.js';
import { InProcessTransport, type InProcessCalls } from '../../src/transport/in-process-transport.js';
import type { InlineSlicer } from '../../src/transport/inline-slicer.js';
import { CommandFailedError, type TokenInfo } from '../../src/transport/transport.js';
import { keyedToken, memberOptions } from './keyed-token.js';

export interface InProcessToken {
  /** A new transport on the token, connected; closed after the describe's tests. */
  open(calls: InProcessCalls, slicer?: InlineSlicer): Promise<{ t: InProcessTransport; info: TokenInfo }>;
  /** `n` new sessions, the user logged in (the login is token-wide: already logged in is fine). */
  loggedIn(t: InProcessTransport, info: TokenInfo, n: number): Promise<Handle[]>;
  /** The handle of the standard AES or HMAC key, and its value to check outputs against. */
  secret(t: InProcessTransport, session: Handle, kind: 'aes' | 'hmac'): Promise<{ key: Handle; value: Buffer }>;
}

/**
 * Creates the token (keys labelled `<prefix>-aes`, ...) before the calling describe's tests
 * and closes every transport it opened and disposes of the token after them.
 */
export function inProcessToken(prefix: string): InProcessToken {
  let bed: Testbed;
  let token: TestbedToken;
  let keys: Map<string, ProvisionedKey>;
  const transports: InProcessTransport[] = [];

  beforeAll(async () => {
    ({ bed, token, keys } = await keyedToken(prefix));
  });
  afterAll(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await bed?.dispose();
  });

  return {
    async open(calls, slicer) {
      const t = new InProcessTransport({ ...memberOptions(token), calls, ...(slicer ? { slicer } : {}) });
      transports.push(t);
      return { t, info: await t.connect() };
    },
    async loggedIn(t, info, n) {
      const sessions = await Promise.all(Array.from({ length: n }, () => t.execute({ op: 'openSession', slot: info.slot })));
      try {
        await t.execute({ op: 'login', session: sessions[0]!, userType: pkcs11js.CKU_USER, pin: token.userPin });
      } catch (error) {
        if (!(error instanceof CommandFailedError && error.wire.rv === pkcs11js.CKR_USER_ALREADY_LOGGED_IN)) throw error;
      }
      return sessions;
    },
    async secret(t, session, kind) {
      const k = keys.get(kind) as Extract<ProvisionedKey, { kind: 'aes' | 'hmac' }>;
      const [key] = await t.execute({ op: 'findObjects', session, template: toRawTemplate({ label: k.label, class: 'secretKey' }) });
      return { key: key!, value: k.value };
    },
  };
}
