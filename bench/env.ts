/**
 * Imported first by bench/run.ts: the process-level settings of the benchmark.
 *
 * libuv's threadpool runs pkcs11js's async calls (the async baseline). It starts once
 * per process, with the UV_THREADPOOL_SIZE it reads at that moment. The module loader may
 * have done asynchronous file I/O (and so started the pool) before the first line of
 * bench/run.ts runs (under tsx it has: assigning `process.env.UV_THREADPOOL_SIZE` here had
 * NO effect, the process's thread count did not change), so only the environment the
 * process starts with counts, e.g.
 *
 *     UV_THREADPOOL_SIZE=8 npm run bench -- --quick
 *
 * The default of 4 threads is kept on purpose: on the 2-core machine, 2 and 8 threads
 * gave no consistent gain for async ECDSA, RSA or AES at 16 in flight (the differences
 * were inside the run-to-run noise), and 4 threads already keep both cores busy.
 */

/** The threadpool size in effect (libuv's default is 4), for the report. */
export const threadpoolSize: string = process.env['UV_THREADPOOL_SIZE'] ?? '4 (default)';
