import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { HaError } from '../../src/errors/ha-error.js';
import { createTestbed, findSoftHsmModule, softHsmVersion, type Testbed } from '../../src/testbed/softhsm-testbed.js';

const pkcs11js = createRequire(import.meta.url)('pkcs11js') as typeof import('pkcs11js');

interface LoadedToken {
  label: string;
  serial: string;
  slot: Buffer;
}

/** Loads a module with `conf`, runs `fn` on its initialised tokens, finalizes and closes it. */
async function withModule<T>(
  modulePath: string,
  conf: string,
  fn: (mod: import('pkcs11js').PKCS11, tokens: LoadedToken[]) => T | Promise<T>,
): Promise<T> {
  const mod = new pkcs11js.PKCS11();
  mod.load(modulePath);
  try {
    process.env['SOFTHSM2_CONF'] = conf;
    mod.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    try {
      const tokens: LoadedToken[] = [];
      for (const slot of mod.C_GetSlotList(true)) {
        const info = mod.C_GetTokenInfo(slot);
        if ((info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) continue;
        tokens.push({ label: info.label.trim(), serial: info.serialNumber.trim(), slot });
      }
      return await fn(mod, tokens);
    } finally {
      mod.C_Finalize();
    }
  } finally {
    mod.close();
  }
}

function loginWorks(mod: import('pkcs11js').PKCS11, slot: Buffer, pin: string): void {
  const session = mod.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    mod.C_Login(session, pkcs11js.CKU_USER, pin);
    mod.C_Logout(session);
  } finally {
    mod.C_CloseSession(session);
  }
}

describe('SoftHSM2 testbed', () => {
  const savedConf = process.env['SOFTHSM2_CONF'];
  const created: Testbed[] = [];

  afterAll(async () => {
    if (savedConf === undefined) delete process.env['SOFTHSM2_CONF'];
    else process.env['SOFTHSM2_CONF'] = savedConf;
    await Promise.all(created.map((t) => t.dispose()));
  });

  it('finds the module and the version', async () => {
    const modulePath = findSoftHsmModule();
    expect(modulePath).toBeDefined();
    expect(existsSync(modulePath!)).toBe(true);
    expect(await softHsmVersion()).toMatch(/^\d+\.\d+/);
  });

  it('creates independent tokens, each a separate module instance in this process', async () => {
    const testbed = await createTestbed({ count: 3 });
    created.push(testbed);

    expect(dirname(testbed.dir)).toBe(tmpdir().replace(/\/$/, ''));
    expect(basename(testbed.dir)).toMatch(/^pkcs11-ha-/);
    expect(testbed.tokens.map((t) => t.label)).toEqual(['member-1', 'member-2', 'member-3']);
    expect(testbed.tokens.map((t) => t.index)).toEqual([0, 1, 2]);
    expect(new Set(testbed.tokens.map((t) => t.modulePath)).size).toBe(3);
    expect(new Set(testbed.tokens.map((t) => t.confPath)).size).toBe(3);
    expect(new Set(testbed.tokens.map((t) => t.serial)).size).toBe(3);
    for (const t of testbed.tokens) {
      expect(t.serial).toMatch(/^[0-9a-f]{16}$/);
      expect(t.userPin).toMatch(/^\d{8}$/);
      expect(t.soPin).toMatch(/^\d{8}$/);
      expect(t.env).toEqual({ SOFTHSM2_CONF: t.confPath });
      expect(t.modulePath.startsWith(testbed.dir)).toBe(true);
      expect(existsSync(t.modulePath)).toBe(true);
    }

    // Load all three copies at once: each must initialise on its own (the same library
    // instance would answer CKR_CRYPTOKI_ALREADY_INITIALIZED) and see only its own token.
    const [a, b, c] = testbed.tokens;
    await withModule(a!.modulePath, a!.confPath, async (modA, tokensA) =>
      withModule(b!.modulePath, b!.confPath, async (modB, tokensB) =>
        withModule(c!.modulePath, c!.confPath, (modC, tokensC) => {
          const seen = [
            { mod: modA, tokens: tokensA, expected: a! },
            { mod: modB, tokens: tokensB, expected: b! },
            { mod: modC, tokens: tokensC, expected: c! },
          ];
          for (const { mod, tokens, expected } of seen) {
            expect(tokens.map(({ label, serial }) => ({ label, serial }))).toEqual([
              { label: expected.label, serial: expected.serial },
            ]);
            loginWorks(mod, tokens[0]!.slot, expected.userPin);
          }
        }),
      ),
    );

    const configs = testbed.memberConfigs({ roles: ['active', 'active', 'standby'] });
    expect(configs).toEqual(
      testbed.tokens.map((t, i) => ({
        name: t.label,
        module: { path: t.modulePath, env: { SOFTHSM2_CONF: t.confPath } },
        token: { label: t.label },
        userPin: t.userPin,
        soPin: t.soPin,
        role: i === 2 ? 'standby' : 'active',
      })),
    );
    expect(testbed.memberConfigs().every((m) => m.role === 'active')).toBe(true);
  });

  it('shared layout: one module with all tokens as slots', async () => {
    const testbed = await createTestbed({ count: 3, layout: 'shared', labelPrefix: 'shared', userPin: '11223344' });
    created.push(testbed);
    const modulePath = findSoftHsmModule()!;
    expect(testbed.tokens.every((t) => t.modulePath === modulePath)).toBe(true);
    expect(new Set(testbed.tokens.map((t) => t.confPath)).size).toBe(1);

    await withModule(modulePath, testbed.tokens[0]!.confPath, (mod, tokens) => {
      const byLabel = new Map(tokens.map((t) => [t.label, t]));
      expect(tokens).toHaveLength(3);
      for (const t of testbed.tokens) {
        expect(byLabel.get(t.label)?.serial).toBe(t.serial);
        expect(t.userPin).toBe('11223344');
        loginWorks(mod, byLabel.get(t.label)!.slot, t.userPin);
      }
    });
  });

  it('dispose removes the directory and is idempotent', async () => {
    const testbed = await createTestbed({ count: 1 });
    expect(existsSync(testbed.dir)).toBe(true);
    await Promise.all([testbed.dispose(), testbed.dispose()]);
    expect(existsSync(testbed.dir)).toBe(false);
    await testbed.dispose();
    await testbed[Symbol.asyncDispose]();
  });

  it('error messages never contain the PINs', async () => {
    const soPin = '97531864';
    const userPin = '86420975';
    // softhsm2-util rejects labels longer than 32 characters.
    const error = await createTestbed({ count: 2, labelPrefix: 'x'.repeat(40), soPin, userPin }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(HaError.is(error)).toBe(true);
    const haError = error as HaError;
    expect(haError.code).toBe('ERR_TESTBED');
    expect(haError.message).toMatch(/initialising token/);
    expect(haError.message).toMatch(/32/);
    const everything = `${haError.message}\n${haError.stack ?? ''}\n${JSON.stringify(haError)}\n${String(haError.cause)}`;
    expect(everything).not.toContain(soPin);
    expect(everything).not.toContain(userPin);
  });

  it('rejects invalid options', async () => {
    await expect(createTestbed({ count: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(createTestbed({ userPin: '12' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(createTestbed({ modulePath: '/nonexistent/libsofthsm2.so' })).rejects.toMatchObject({
      code: 'ERR_TESTBED',
      message: expect.stringContaining('apt-get install -y softhsm2'),
    });
  });
});
