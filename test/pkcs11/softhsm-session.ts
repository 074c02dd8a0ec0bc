/**
 * A logged-in session on a fresh SoftHSM2 token, for the tests that check what the
 * template codec and the mechanism table produce against a real module.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

import type { Handle, PKCS11 } from 'pkcs11js';

import { pkcs11js } from '../../src/native/pkcs11js.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/** True when SoftHSM2 is installed, so the real-token tests can run. */
export const hasSoftHsm = existsSync(SOFTHSM_MODULE);

/**
 * Runs `fn` with a user session on a new token in a temporary directory, on its own byte
 * copy of the module (an independent library instance), and removes everything afterwards.
 */
export function withSoftHsmSession<T>(fn: (pkcs11: PKCS11, session: Handle) => T): T {
  const dir = mkdtempSync(join(os.tmpdir(), 'pkcs11-ha-pkcs11-'));
  const conf = join(dir, 'softhsm2.conf');
  const previousConf = process.env.SOFTHSM2_CONF;
  const pkcs11 = new pkcs11js.PKCS11();
  let loaded = false;
  let initialized = false;
  try {
    mkdirSync(join(dir, 'tokens'));
    writeFileSync(
      conf,
      [`directories.tokendir = ${join(dir, 'tokens')}`, 'objectstore.backend = file', 'log.level = ERROR', 'slots.removable = false', ''].join('\n'),
    );
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'T', '--so-pin', '12345678', '--pin', '1234'], {
      env: { ...process.env, SOFTHSM2_CONF: conf },
      stdio: 'pipe',
    });
    const module = join(dir, 'libsofthsm2.so');
    copyFileSync(SOFTHSM_MODULE, module);

    process.env.SOFTHSM2_CONF = conf;
    pkcs11.load(module);
    loaded = true;
    pkcs11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    initialized = true;

    const slot = pkcs11.C_GetSlotList(true).find((s) => pkcs11.C_GetTokenInfo(s).label.trim() === 'T');
    if (!slot) throw new Error('token T not found');
    const session = pkcs11.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    pkcs11.C_Login(session, pkcs11js.CKU_USER, '1234');
    try {
      return fn(pkcs11, session);
    } finally {
      pkcs11.C_Logout(session);
      pkcs11.C_CloseSession(session);
    }
  } finally {
    if (initialized) pkcs11.C_Finalize();
    if (loaded) pkcs11.close();
    if (previousConf === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = previousConf;
    rmSync(dir, { recursive: true, force: true });
  }
}
