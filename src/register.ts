/**
 * `pkcs11-ha/register`: `node --import pkcs11-ha/register app.js` (with
 * `PKCS11_HA_CONFIG=group.json`) makes every `import` and `require` of `pkcs11js` in the
 * application and its dependencies (graphene-pk11, node-webcrypto-p11, ...) resolve to
 * the facade (`pkcs11-ha/pkcs11js`), so that they run on the group unchanged.
 *
 * Loading it only installs the redirection: the group opens at C_Initialize. The
 * library's own use of pkcs11js is never redirected, and the member hosts and threads the
 * group starts run without this hook (the facade worker takes it out of their flags and
 * environment), so a member host can never open a group of its own.
 *
 * @packageDocumentation
 */
import { installRedirect, redirectTargets } from './facade/redirect.js';

// Threads and processes the facade's group starts carry this mark: they keep pkcs11js real.
if (process.env['PKCS11_HA_FACADE_CHILD'] !== '1') {
  const root = new URL('..', import.meta.url);
  installRedirect(redirectTargets(root, import.meta.url.endsWith('.js')));
}
