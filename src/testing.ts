/**
 * `pkcs11-ha/testing`: the internals of an open group, for tests, benchmarks and
 * diagnostics. Not part of the stable API: applications use `status()` and the
 * membership methods of `HaGroup`.
 */
export { internalsOf, type GroupInternals } from './group/group-internals.js';
export { seededRandom } from './routing/peak-ewma-scheduler.js';
