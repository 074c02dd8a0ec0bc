/** Debts for the journal's tests: a token (or session) key by handle and label. */
import { randomBytes } from 'node:crypto';
import { pkcs11js as A } from '../../src/native/pkcs11js.js';
import type { Debt, ObjectRef } from '../../src/replication/journal.js';

export function ref(handle: number, label: string, token = true): ObjectRef {
  return {
    handle,
    name: `4/31/${Buffer.from(label).toString('hex')}/-/${token ? 'T' : 'S'}`,
    fingerprint: `domain-wrap:${'ab'.repeat(16)}`,
    search: [
      { type: A.CKA_LABEL, value: Buffer.from(label) },
      { type: A.CKA_TOKEN, value: Buffer.from([token ? 1 : 0]) },
    ],
    token,
  };
}

export const replica = (handle: number, label: string, token = true): Extract<Debt, { kind: 'replica' }> => ({
  kind: 'replica',
  object: ref(handle, label, token),
  wrapped: randomBytes(40),
  template: [
    { type: A.CKA_CLASS, value: Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]) },
    { type: A.CKA_LABEL, value: Buffer.from(label) },
    { type: A.CKA_ENCRYPT, value: Buffer.from([1]) },
  ],
});

/** Whether a promise has settled yet. */
export function tracked<T>(promise: Promise<T>): { readonly settled: boolean } {
  const state = { settled: false };
  promise.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

/** One turn of the event loop: lets every queued callback and promise run. */
export const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
