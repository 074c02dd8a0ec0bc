/**
 * `PKCS11`: pkcs11js 2.1's class over an HA group. Every `C_*` function in pkcs11js's
 * forms: synchronous, with a callback (where pkcs11js takes one), and `*Async`; handles are
 * 8-byte Buffers, attributes and mechanisms pkcs11js's shapes, errors pkcs11js's own
 * `Pkcs11Error`. The group runs in a worker thread (group-client.ts); a path that is not a
 * group config (and no `PKCS11_HA_CONFIG`) loads the real module through pkcs11js.
 */
import type * as Pkcs11js from 'pkcs11js';
import type { GroupFileConfig } from '../group/group-config.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { pkcs11Failure, toFailure, toPkcs11jsError } from './facade-error.js';
import { toMechanism } from '../pkcs11/mechanism-table.js';
import { handleBuffer } from './facade-protocol.js';
import { handleArg, slotArg, WORKER_FUNCTIONS, type FunctionSpec } from './function-specs.js';
import { CallFailure, GroupClient } from './group-client.js';
import { groupSource, type GroupSource } from './group-source.js';
import { moduleInfo, slotInfo, VIRTUAL_SLOT_ID } from './slot-info.js';

/**
 * Functions the virtual slot refuses: the token is initialised member by member, before it
 * joins, and slot events are the group's own business (members come and go inside the
 * one slot). C_InitPIN and C_SetPIN reach every member (login/pin-change.ts).
 */
const NOT_SUPPORTED = ['C_InitToken', 'C_WaitForSlotEvent'] as const;

/** The functions answered here, without the worker: what they return cannot change. */
const LOCAL: Record<string, { n: number; run: (a: readonly unknown[]) => unknown }> = {
  C_GetInfo: { n: 0, run: () => moduleInfo() },
  C_GetSlotList: { n: 0, run: () => [handleBuffer(VIRTUAL_SLOT_ID)] },
  C_GetSlotInfo: { n: 1, run: (a) => slotInfo(slot(a)) },
};

const slot = (a: readonly unknown[]): Buffer => slotArg(a, 0);

/**
 * The C_*Init calls sent with the next call instead of on their own (no round trip): an
 * Init only records the operation in the worker, and the members see it with the call
 * that follows anyway. What an Init would refuse (a bad session or key handle, an
 * operation already active, a bad mechanism) is refused by the next call of that
 * operation on that session (C_Sign, C_SignUpdate, C_SignFinal), with the same code.
 */
const PIPELINED = /^C_(Encrypt|Decrypt|Sign|Verify|Digest)Init$/;

/**
 * Whether a call goes with the next one: a pipelined Init whose mechanism is checked here
 * (as the worker would) and whose session and key handles the worker gave out. A handle
 * it never gave out goes the usual way, so that the Init itself gets the refusal; one
 * closed or destroyed since is refused by the next call.
 *
 * @throws {@link CallFailure} a mechanism the worker would refuse
 */
function pipelines(client: GroupClient, fn: string, sent: readonly unknown[]): boolean {
  if (!PIPELINED.test(fn)) return false;
  if (!client.gave(...(sent.length > 2 ? [sent[0] as number, sent[2] as number] : [sent[0] as number]))) return false;
  try {
    toMechanism(sent[1] as Pkcs11js.Mechanism);
  } catch (error) {
    throw new CallFailure(toFailure(error, fn));
  }
  return true;
}

let nextOwner = 1;

/**
 * pkcs11js's `PKCS11`, with the virtual slot of an HA group behind it.
 *
 * @example
 * import { PKCS11, CKF_SERIAL_SESSION, CKF_RW_SESSION, CKU_USER } from 'pkcs11-ha/pkcs11js';
 * const p = new PKCS11();
 * p.load('group.json');            // a group config file (or any path with PKCS11_HA_CONFIG set)
 * p.C_Initialize();
 * const [slot] = p.C_GetSlotList(true);
 * const session = p.C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
 * p.C_Login(session, CKU_USER, pin);
 */
export class PKCS11 {
  /** The path given to `load` (a config file or, with PKCS11_HA_CONFIG, any path). */
  libPath = '';
  readonly #owner = nextOwner++;
  #source: GroupSource | undefined;
  #real: Pkcs11js.PKCS11 | undefined;
  #client: GroupClient | undefined;

  /** @param libPath as pkcs11js: loads at once when given */
  constructor(libPath?: string | GroupFileConfig) {
    if (libPath !== undefined) this.load(libPath);
  }

  /**
   * Takes a group config file (the JSON the CLI reads) or a config object (file-expressible
   * options only: it crosses to a worker thread). With `PKCS11_HA_CONFIG` set, any path
   * means that file's group. Any other path is a real PKCS#11 module, loaded by pkcs11js.
   *
   * @throws {@link HaError} `ERR_CONFIG` for an invalid configuration
   */
  load(path: string | GroupFileConfig): void {
    const source = groupSource(path);
    this.libPath = typeof path === 'string' ? path : '';
    if (source !== undefined) {
      this.#source = source;
      return;
    }
    const real = new pkcs11js.PKCS11();
    real.load(path as string);
    this.#real = real;
  }

  /** Closes the module (pkcs11js: C_Finalize if initialised, then unload). */
  close(): void {
    if (this.#real) return this.#real.close();
    if (this.#client !== undefined) this.C_Finalize();
  }

  /** Opens the group (shared with the other PKCS11 objects of this process that opened it). `options` are accepted and ignored: the group always runs its members with OS locking. */
  C_Initialize(options?: Pkcs11js.InitializationOptions): void {
    if (this.#real) return this.#real.C_Initialize(options);
    if (this.#source === undefined) throw new pkcs11js.NativeError('Library is not loaded', 'C_Initialize');
    if (this.#client !== undefined) throw toPkcs11jsError(pkcs11Failure('CKR_CRYPTOKI_ALREADY_INITIALIZED'), 'C_Initialize');
    try {
      this.#client = GroupClient.acquire(this.#source.key, this.#source.config, this.#source.label);
    } catch (error) {
      throw error instanceof CallFailure ? toPkcs11jsError(error.failure, 'C_Initialize') : error;
    }
  }

  /** Ends this object's sessions; the group closes with the last C_Finalize of the process. */
  C_Finalize(): void {
    if (this.#real) return this.#real.C_Finalize();
    const client = this.#initialized('C_Finalize');
    this.#client = undefined;
    client.release(this.#owner);
  }

  /** C_FindObjects(session) gives the next handle or null; with a count, up to that many. */
  C_FindObjects(session: Buffer): Buffer | null;
  C_FindObjects(session: Buffer, maxObjectCount: number): Buffer[];
  C_FindObjects(session: Buffer, maxObjectCount?: number): Buffer[] | Buffer | null {
    if (this.#real) return maxObjectCount === undefined ? this.#real.C_FindObjects(session) : this.#real.C_FindObjects(session, maxObjectCount);
    const client = this.#initialized('C_FindObjects');
    const s = handleArg([session], 0);
    const n = maxObjectCount === undefined ? 1 : maxObjectCount;
    const found = this.#sync('C_FindObjects', () => client.callSync(this.#owner, 'C_FindObjects', [s, n])) as number[];
    const handles = found.map(handleBuffer);
    return maxObjectCount === undefined ? (handles[0] ?? null) : handles;
  }

  /** Promise form of C_FindObjects with a count. */
  async C_FindObjectsAsync(session: Buffer, maxObjectCount = 1): Promise<Buffer[]> {
    if (this.#real) return this.#real.C_FindObjects(session, maxObjectCount);
    const client = this.#initialized('C_FindObjects');
    const s = handleArg([session], 0);
    try {
      return ((await client.callAsync(this.#owner, 'C_FindObjects', [s, maxObjectCount])) as number[]).map(handleBuffer);
    } catch (error) {
      throw error instanceof CallFailure ? toPkcs11jsError(error.failure, 'C_FindObjects') : error;
    }
  }

  #initialized(fn: string): GroupClient {
    if (this.#client === undefined) throw toPkcs11jsError(pkcs11Failure('CKR_CRYPTOKI_NOT_INITIALIZED'), fn);
    return this.#client;
  }

  #sync(fn: string, run: () => unknown): unknown {
    try {
      return run();
    } catch (error) {
      throw error instanceof CallFailure ? toPkcs11jsError(error.failure, fn) : error;
    }
  }

  /** One call in the synchronous form. */
  #callSync(fn: string, args: readonly unknown[]): unknown {
    if (this.#real) return (this.#real as unknown as Record<string, (...a: unknown[]) => unknown>)[fn]!(...args);
    return this.#sync(fn, () => {
      const local = LOCAL[fn];
      if (local !== undefined) {
        this.#initialized(fn);
        checkCount(local.n, args);
        return local.run(args);
      }
      if ((NOT_SUPPORTED as readonly string[]).includes(fn)) {
        this.#initialized(fn);
        throw new CallFailure(pkcs11Failure('CKR_FUNCTION_NOT_SUPPORTED'));
      }
      const spec = WORKER_FUNCTIONS[fn]!;
      const client = this.#initialized(fn);
      checkCount(spec.n, args);
      const sent = spec.send(args);
      if (pipelines(client, fn, sent)) return client.pipeline(this.#owner, fn, sent);
      const value = client.callSync(this.#owner, fn, sent);
      return spec.back ? spec.back(value, args) : value;
    });
  }

  /** One call in the promise form (the callback form goes through it too). */
  async #callAsync(fn: string, args: readonly unknown[]): Promise<unknown> {
    if (this.#real) {
      const real = this.#real as unknown as Record<string, (...a: unknown[]) => unknown>;
      return typeof real[`${fn}Async`] === 'function' ? real[`${fn}Async`]!(...args) : real[fn]!(...args);
    }
    const spec: FunctionSpec | undefined = WORKER_FUNCTIONS[fn];
    if (spec === undefined) return this.#callSync(fn, args);
    const client = this.#initialized(fn);
    checkCount(spec.n, args);
    const sent = spec.send(args);
    try {
      if (pipelines(client, fn, sent)) return client.pipeline(this.#owner, fn, sent);
      const value = await client.callAsync(this.#owner, fn, sent);
      return spec.back ? spec.back(value, args) : value;
    } catch (error) {
      throw error instanceof CallFailure ? toPkcs11jsError(error.failure, fn) : error;
    }
  }

  static {
    const names = [...Object.keys(LOCAL), ...NOT_SUPPORTED, ...Object.keys(WORKER_FUNCTIONS)];
    const proto = PKCS11.prototype as unknown as Record<string, unknown>;
    for (const fn of names) {
      const n = LOCAL[fn]?.n ?? WORKER_FUNCTIONS[fn]?.n ?? 0;
      proto[fn] = function (this: PKCS11, ...args: unknown[]): unknown {
        const cb = args.at(-1);
        if (args.length > n && typeof cb === 'function') {
          // The callback form: pkcs11js calls back (error, null) or (null, result), later.
          const callback = cb as (error: Error | null, result: unknown) => void;
          this.#callAsync(fn, args.slice(0, -1)).then(
            (v) => callback(null, v),
            (e: Error) => callback(e, null),
          );
          return undefined;
        }
        return this.#callSync(fn, args);
      };
      proto[`${fn}Async`] = function (this: PKCS11, ...args: unknown[]): Promise<unknown> {
        return this.#callAsync(fn, args);
      };
    }
  }
}

/** pkcs11js's TypeError for missing arguments. */
function checkCount(n: number, args: readonly unknown[]): void {
  if (args.length < n) throw new TypeError(`Parameters are required. Expected ${n} arguments, but received ${args.length}.`);
}

type Real = Omit<Pkcs11js.PKCS11, 'load' | 'close' | 'C_Initialize' | 'C_Finalize' | 'C_FindObjects' | 'libPath'>;

/** The `*Async` forms pkcs11js lacks, which the facade adds for every function (the promise of the synchronous result). */
export type AddedAsyncForms = {
  [K in keyof Real as K extends `C_${string}` ? (`${K}Async` extends keyof Real ? never : `${K}Async`) : never]: Real[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<R> : never;
};

/** The pkcs11js functions and fields of {@link PKCS11}, with pkcs11js's own signatures. */
export interface PKCS11 extends Real, AddedAsyncForms {}
