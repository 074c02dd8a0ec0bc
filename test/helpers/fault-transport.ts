/**
 * A transport that wraps a real one and injects faults on demand (STYLE habit 3: plugged
 * in through the group's `transportFactory`). Commands without a fault pass through to
 * the wrapped transport unchanged.
 */
import { ckrName } from '../../src/errors/return-codes.js';
import type { Command, CommandName, CommandResult } from '../../src/pkcs11/commands.js';
import { InProcessTransport } from '../../src/transport/in-process-transport.js';
import { CommandFailedError, type TokenInfo, type Transport } from '../../src/transport/transport.js';
import type { ResolvedMemberConfig } from '../../src/group/group-config.js';

/**
 * What an injected fault does to the command it hits:
 * - `{ rv }`: the module answers with that return value (a {@link CommandFailedError});
 * - `'disconnect'`: the connection drops: the disconnect listeners are told and this and
 *   every later command rejects with a plain Error;
 * - `'hang'`: the command never settles until {@link FaultTransport.release}.
 */
export type Fault = { readonly rv: number } | 'disconnect' | 'hang';

/** The PKCS#11 function a failing command reports (its last call; `C_SignInit` failures look the same to a member). */
const FUNCTION_OF: { readonly [N in CommandName]: string } = {
  openSession: 'C_OpenSession',
  closeSession: 'C_CloseSession',
  login: 'C_Login',
  logout: 'C_Logout',
  initPin: 'C_InitPIN',
  setPin: 'C_SetPIN',
  getMechanismList: 'C_GetMechanismList',
  getMechanismInfo: 'C_GetMechanismInfo',
  getTokenInfo: 'C_GetTokenInfo',
  encrypt: 'C_Encrypt',
  decrypt: 'C_Decrypt',
  sign: 'C_Sign',
  verify: 'C_Verify',
  digest: 'C_Digest',
  generateRandom: 'C_GenerateRandom',
  seedRandom: 'C_SeedRandom',
  findObjects: 'C_FindObjects',
  getAttributes: 'C_GetAttributeValue',
  setAttributes: 'C_SetAttributeValue',
  createObject: 'C_CreateObject',
  copyObject: 'C_CopyObject',
  destroyObject: 'C_DestroyObject',
  generateKey: 'C_GenerateKey',
  generateKeyPair: 'C_GenerateKeyPair',
  wrapKey: 'C_WrapKey',
  unwrapKey: 'C_UnwrapKey',
  deriveKey: 'C_DeriveKey',
  digestKey: 'C_DigestKey',
  encryptInit: 'C_EncryptInit',
  encryptUpdate: 'C_EncryptUpdate',
  encryptFinal: 'C_EncryptFinal',
  decryptInit: 'C_DecryptInit',
  decryptUpdate: 'C_DecryptUpdate',
  decryptFinal: 'C_DecryptFinal',
  signInit: 'C_SignInit',
  signUpdate: 'C_SignUpdate',
  signFinal: 'C_SignFinal',
  verifyInit: 'C_VerifyInit',
  verifyUpdate: 'C_VerifyUpdate',
  verifyFinal: 'C_VerifyFinal',
  digestInit: 'C_DigestInit',
  digestUpdate: 'C_DigestUpdate',
  digestUpdateKey: 'C_DigestKey',
  digestFinal: 'C_DigestFinal',
  contextLogin: 'C_Login',
  encryptOnce: 'C_Encrypt',
  decryptOnce: 'C_Decrypt',
  signOnce: 'C_Sign',
  verifyOnce: 'C_Verify',
};

interface Hung {
  readonly command: Command;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
}

/**
 * Wraps a real {@link Transport} and fails, drops or holds chosen commands.
 *
 * @example
 * const faults: FaultTransport[] = [];
 * const group = await HaGroup.open({
 *   members: bed.memberConfigs(),
 *   transportFactory: (m) => (faults[m.index] = FaultTransport.inProcess(m)),
 * });
 * faults[0]!.failNext('sign', { rv: pkcs11js.CKR_DEVICE_REMOVED });
 */
export class FaultTransport implements Transport {
  readonly kind: string;
  readonly #inner: Transport;
  readonly #queued: { op: CommandName | '*'; fault: Fault }[] = [];
  readonly #executed = new Map<CommandName, number>();
  readonly #hung: Hung[] = [];
  readonly #listeners: ((error: Error) => void)[] = [];
  readonly #heartbeatListeners: ((queueDepth: number) => void)[] = [];
  #lost: Error | undefined;
  #closed = false;

  constructor(inner: Transport) {
    this.#inner = inner;
    this.kind = `fault(${inner.kind})`;
    // A real drop of the wrapped transport reaches the member too.
    inner.onDisconnect((error) => this.#disconnect(error));
  }

  /** A FaultTransport over the in-process transport the group would have built for `m`. */
  static inProcess(m: ResolvedMemberConfig): FaultTransport {
    return new FaultTransport(
      new InProcessTransport({ member: m.name, modulePath: m.modulePath, moduleEnv: m.moduleEnv, token: m.token, threads: m.threads, configPath: m.path }),
    );
  }

  /**
   * Makes the next `times` commands named `op` (any command for `'*'`, including the
   * pool's own openSession/closeSession) hit `fault`. Faults queue in the order given.
   */
  failNext(op: CommandName | '*', fault: Fault, times = 1): void {
    for (let i = 0; i < times; i++) this.#queued.push({ op, fault });
  }

  /** Faults queued and not yet hit. */
  get queuedFaults(): number {
    return this.#queued.length;
  }

  /** Commands that reached the wrapped transport: of one kind, or all of them. */
  executed(op?: CommandName): number {
    if (op !== undefined) return this.#executed.get(op) ?? 0;
    let total = 0;
    for (const n of this.#executed.values()) total += n;
    return total;
  }

  /** Commands held by a `'hang'` fault now. */
  get hanging(): number {
    return this.#hung.length;
  }

  /**
   * Lets every hung command go: to the wrapped transport (they then settle as they
   * would have), or, given `error`, rejects them with it.
   * @returns how many were let go
   */
  release(error?: Error): number {
    const hung = this.#hung.splice(0);
    // A dropped connection cannot run what it held.
    const reason = error ?? this.#lost;
    for (const h of hung) {
      if (reason !== undefined) h.reject(reason);
      else this.#pass(h.command).then(h.resolve, h.reject);
    }
    return hung.length;
  }

  /** Sends a heartbeat, as a member host does for commands pending longer than its interval. */
  heartbeat(queueDepth = this.pending): void {
    for (const l of this.#heartbeatListeners) l(queueDepth);
  }

  onHeartbeat(listener: (queueDepth: number) => void): void {
    this.#heartbeatListeners.push(listener);
  }

  /** Drops the connection now, as if the peer went away (listeners are told once). */
  disconnect(error = new Error('connection lost (injected)')): void {
    this.#disconnect(error);
  }

  connect(): Promise<TokenInfo> {
    return this.#inner.connect();
  }

  execute<N extends CommandName>(command: Extract<Command, { op: N }>): Promise<CommandResult<N>> {
    if (this.#closed) return Promise.reject(new Error(`${command.op}: transport closed`));
    if (this.#lost) return Promise.reject(new Error(`${command.op}: ${this.#lost.message}`));
    const i = this.#queued.findIndex((q) => q.op === '*' || q.op === command.op);
    if (i < 0) return this.#pass(command) as Promise<CommandResult<N>>;
    const { fault } = this.#queued.splice(i, 1)[0]!;
    if (fault === 'hang') {
      return new Promise((resolve, reject) => this.#hung.push({ command, resolve: resolve as (value: unknown) => void, reject }));
    }
    if (fault === 'disconnect') {
      const error = new Error(`connection lost during ${command.op} (injected)`);
      this.#disconnect(error);
      return Promise.reject(error);
    }
    const rv = fault.rv;
    return Promise.reject(new CommandFailedError({ rv, fn: FUNCTION_OF[command.op], message: `${ckrName(rv)}:${rv}` }));
  }

  get pending(): number {
    return this.#inner.pending + this.#hung.length;
  }

  onDisconnect(listener: (error: Error) => void): void {
    this.#listeners.push(listener);
  }

  /** Rejects hung commands (the Transport contract), then closes the wrapped transport. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.release(new Error('transport closed'));
    await this.#inner.close();
  }

  #pass(command: Command): Promise<unknown> {
    this.#executed.set(command.op, (this.#executed.get(command.op) ?? 0) + 1);
    return this.#inner.execute(command as Extract<Command, { op: CommandName }>);
  }

  #disconnect(error: Error): void {
    if (this.#lost || this.#closed) return;
    this.#lost = error;
    for (const l of this.#listeners.splice(0)) l(error);
  }
}
