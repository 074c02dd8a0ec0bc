/**
 * Keeps each client of a member host honest when several application processes share it
 * (a remote member host over TLS). PKCS#11 login state belongs to the host's process: once
 * one client logged the token in, every session of the host sees the private objects. The
 * guard puts a per-client login state on top:
 *
 * - a client uses private objects only after presenting the right user PIN itself, even
 *   when another client logged the token in: its PIN is compared with a salted scrypt hash
 *   of the PIN that succeeded (the PIN itself is never kept);
 * - a wrong PIN reaches the token at most once (its salted hash is remembered), and never
 *   while a client is logged in: another client's mistakes cannot lock the token or log
 *   anyone out. While nobody is logged in, a PIN other than the one that succeeded reaches
 *   the token (once): the PIN may have been changed outside this host;
 * - a client's logout logs the token out only when no other client is logged in;
 * - sessions and session objects belong to the client that made them: another client
 *   naming them gets CKR_SESSION_HANDLE_INVALID / CKR_OBJECT_HANDLE_INVALID, its searches
 *   do not find them, and a client that goes away has its sessions closed.
 *
 * - a session runs one command at a time: a second one on a session with a command in
 *   flight is refused with CKR_OPERATION_ACTIVE (two calls on one session crash SoftHSM,
 *   and a client is not trusted to keep that rule), and a departed client's sessions are
 *   closed only once their commands are done.
 *
 * A client that has not logged in while the token is logged in (by others) sees public
 * objects only: its searches are narrowed to CKA_PRIVATE=false, a command naming a
 * private object is refused with CKR_USER_NOT_LOGGED_IN, and so is a creation that does
 * not ask for CKA_PRIVATE=false. While nobody is logged in, the token's own rules apply.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { ckrValue } from '../errors/return-codes.js';
import type { Command, Handle, WireAttribute } from '../pkcs11/commands.js';
import { parameterHandles } from '../pkcs11/mechanism-parameters.js';
import { CommandFailedError } from '../transport/transport.js';

const CKU_SO = 0;
const CKU_USER = 1;
const CKA_TOKEN = 0x1;
const CKA_PRIVATE = 0x2;

const rv = (name: string): number => ckrValue(name)!;
const SESSION_HANDLE_INVALID = rv('CKR_SESSION_HANDLE_INVALID');
const OBJECT_HANDLE_INVALID = rv('CKR_OBJECT_HANDLE_INVALID');
const USER_NOT_LOGGED_IN = rv('CKR_USER_NOT_LOGGED_IN');
const USER_ALREADY_LOGGED_IN = rv('CKR_USER_ALREADY_LOGGED_IN');
const PIN_INCORRECT = rv('CKR_PIN_INCORRECT');
const OPERATION_ACTIVE = rv('CKR_OPERATION_ACTIVE');

/** The commands the guard always runs itself (their bookkeeping is its job). */
const OWN_OPS: ReadonlySet<string> = new Set(['openSession', 'closeSession', 'login', 'logout', 'initPin', 'setPin', 'contextLogin']);
/** Commands that make objects: refused to a client that has not logged in while others have, unless the new object is public. */
const CREATIONS: ReadonlySet<string> = new Set(['createObject', 'copyObject', 'generateKey', 'generateKeyPair', 'unwrapKey', 'deriveKey']);
/** The fields of a command that name objects (and its mechanism's parameter may: see {@link objectsOf}). */
const OBJECT_FIELDS = ['key', 'object', 'wrappingKey', 'unwrappingKey', 'baseKey'] as const;

/** Counters of a guard, for host stats and tests. */
export interface LoginGuardStats {
  /** Logins (C_Login with the user PIN) the guard let reach the token. */
  readonly tokenLogins: number;
  /** Logins the guard refused without the token (a known wrong PIN, or not the PIN that succeeded). */
  readonly refusedLogins: number;
  /** Clients logged in now. */
  readonly clientsLoggedIn: number;
}

const handleKey = (h: Uint8Array): string => Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('hex');
const failure = (value: number, fn: string): CommandFailedError => new CommandFailedError({ rv: value, fn, message: `${fn} failed` });
const rvOf = (error: unknown): number | undefined => (error instanceof CommandFailedError ? error.wire.rv : undefined);
const isTrue = (v: WireAttribute['value']): boolean => v === true || v === 1 || (Buffer.isBuffer(v) && v.length > 0 && v[0] !== 0);
const isFalse = (v: WireAttribute['value']): boolean => v === false || v === 0 || (Buffer.isBuffer(v) && v.length > 0 && v.every((b) => b === 0));
const says = (template: readonly WireAttribute[] | undefined, type: number, test: (v: WireAttribute['value']) => boolean): boolean => template?.some((a) => a.type === type && test(a.value)) ?? false;

function templatesOf(command: Command): (readonly WireAttribute[])[] {
  if (command.op === 'generateKeyPair') return [command.publicTemplate, command.privateTemplate];
  return 'template' in command ? [command.template] : [];
}

/** The objects a command names: its own fields, and the handles in its mechanism's parameter (an ECDH2 derivation's privateData, a GOST wrap's key). */
function objectsOf(command: Command): Handle[] {
  const out: Handle[] = [];
  for (const field of OBJECT_FIELDS) {
    const h = (command as Partial<Record<(typeof OBJECT_FIELDS)[number], Handle>>)[field];
    if (h !== undefined) out.push(h);
  }
  if ('mechanism' in command) {
    for (const h of parameterHandles(command.mechanism.parameter)) out.push(Buffer.isBuffer(h) ? h : Buffer.from(h.buffer, h.byteOffset, h.byteLength));
  }
  return out;
}

/** Every command but openSession: those name a session. */
type SessionCommand = Exclude<Command, { op: 'openSession' }>;

/** Runs commands on the host's token (its in-process transport). */
export type GuardExecute = (command: Command) => Promise<unknown>;

/**
 * The per-client login state of a member host with several clients. Clients are any
 * objects (the host's connections). The host asks {@link check} for each command; a
 * refusal is answered as the module's error, `'guard'` means {@link run} runs it.
 */
export class ClientLoginGuard {
  readonly #execute: GuardExecute;
  readonly #slot: Handle;
  /**
   * A session of the guard's own, opened before the first token login and kept: the token
   * logs out when its last session closes, which must not happen under clients that are
   * logged in but hold no session at the moment.
   */
  #anchor: Handle | undefined;
  readonly #salt = randomBytes(16);
  /** Salted hash of the user PIN the token accepted; undefined until one did. */
  #goodPin: Buffer | undefined;
  /** Salted hashes (hex) of PINs the token refused: never sent to it again. */
  readonly #badPins = new Set<string>();
  readonly #users = new Set<object>();
  readonly #officers = new Set<object>();
  readonly #sessions = new Map<string, object>();
  /** Session objects: owner and the session they live in. */
  readonly #objects = new Map<string, { readonly client: object; readonly session: string }>();
  /** Sessions with a command in flight on a thread, and the end of that command. */
  readonly #busy = new Map<string, { readonly done: Promise<void>; readonly end: () => void }>();
  /** Logins and logouts one at a time: a second login must see the first one's outcome. */
  #chain: Promise<unknown> = Promise.resolve();
  #tokenLogins = 0;
  #refusedLogins = 0;

  /** @param slot the token's slot, for the guard's own session */
  constructor(execute: GuardExecute, slot: Handle) {
    this.#execute = execute;
    this.#slot = slot;
  }

  /** Counters, for host stats and tests. */
  get stats(): LoginGuardStats {
    return { tokenLogins: this.#tokenLogins, refusedLogins: this.#refusedLogins, clientsLoggedIn: this.#users.size };
  }

  /**
   * The hot-path check of one command: undefined to run it as is, a refusal (the error a
   * module would give), or `'guard'` for {@link run} to run it.
   */
  check(client: object, command: Command): CommandFailedError | 'guard' | undefined {
    if (command.op !== 'openSession') {
      const key = handleKey(command.session);
      if (this.#sessions.get(key) !== client) return failure(SESSION_HANDLE_INVALID, 'C_' + command.op);
      if (this.#busy.has(key)) return failure(OPERATION_ACTIVE, 'C_' + command.op);
    }
    // Another client's session object is not there for this one (a creation's input included).
    if (this.#objects.size > 0) {
      for (const h of objectsOf(command)) {
        const o = this.#objects.get(handleKey(h));
        if (o !== undefined && o.client !== client) return failure(OBJECT_HANDLE_INVALID, 'C_' + command.op);
      }
    }
    // Creations always: the session objects they make are recorded as their client's.
    if (OWN_OPS.has(command.op) || CREATIONS.has(command.op)) return 'guard';
    if (this.#objects.size > 0 && (command.op === 'findObjects' || command.op === 'destroyObject')) return 'guard';
    if (this.#restricted(client)) {
      if (command.op === 'findObjects' || objectsOf(command).length > 0) return 'guard';
    }
    return undefined;
  }

  /**
   * A command the host runs off its main thread starts: its session is busy until
   * {@link end}. (A call made on the main thread is over before anything else is read.)
   */
  begin(command: Command): void {
    if (command.op === 'openSession') return;
    let end = (): void => undefined;
    const done = new Promise<void>((resolve) => (end = resolve));
    this.#busy.set(handleKey(command.session), { done, end });
  }

  /** The command {@link begin} was told of is answered. */
  end(command: Command): void {
    if (command.op === 'openSession') return;
    const key = handleKey(command.session);
    this.#busy.get(key)?.end();
    this.#busy.delete(key);
  }

  /** Whether `client` must be kept to public objects: others logged the token in, it did not. */
  #restricted(client: object): boolean {
    return this.#users.size > 0 && !this.#users.has(client);
  }

  /**
   * Runs a command {@link check} gave to the guard.
   * @throws {@link CommandFailedError} as the module would answer (a refused PIN, a private object)
   */
  async run(client: object, command: Command): Promise<unknown> {
    switch (command.op) {
      case 'openSession': {
        const session = (await this.#execute(command)) as Handle;
        this.#sessions.set(handleKey(session), client);
        return session;
      }
      case 'closeSession': {
        const result = await this.#execute(command);
        this.#dropSession(handleKey(command.session));
        return result;
      }
      case 'login':
        return this.#serial(() => this.#login(client, command));
      case 'contextLogin':
        return this.#contextLogin(client, command);
      case 'logout':
        return this.#serial(() => this.#logout(client, command));
      case 'initPin':
      case 'setPin':
        return this.#serial(() => this.#changePin(client, command));
      default:
        return this.#guarded(client, command);
    }
  }

  /** A command naming objects, searching or creating, from a client that may be restricted or among others' session objects. */
  async #guarded(client: object, command: SessionCommand): Promise<unknown> {
    const restricted = this.#restricted(client);
    if (restricted) {
      if (CREATIONS.has(command.op) && !(command.op === 'generateKeyPair' ? says(command.privateTemplate, CKA_PRIVATE, isFalse) : says(templatesOf(command)[0], CKA_PRIVATE, isFalse))) {
        throw failure(USER_NOT_LOGGED_IN, 'C_' + command.op);
      }
      for (const h of objectsOf(command)) {
        if (await this.#isPrivate(command.session, h)) throw failure(USER_NOT_LOGGED_IN, 'C_' + command.op);
      }
    }
    if (command.op === 'findObjects') {
      if (restricted && says(command.template, CKA_PRIVATE, isTrue)) return [];
      const template = restricted ? [...command.template.filter((a) => a.type !== CKA_PRIVATE), { type: CKA_PRIVATE, value: false }] : command.template;
      const found = (await this.#execute({ ...command, template })) as Handle[];
      return found.filter((h) => {
        const o = this.#objects.get(handleKey(h));
        return o === undefined || o.client === client;
      });
    }
    const result = await this.#execute(command);
    if (command.op === 'destroyObject') this.#objects.delete(handleKey(command.object));
    else if (CREATIONS.has(command.op)) this.#noteCreated(client, command, result);
    return result;
  }

  /** Records the session objects a creation made, as its client's. */
  #noteCreated(client: object, command: SessionCommand, result: unknown): void {
    const session = handleKey(command.session);
    const note = (h: Handle, template: readonly WireAttribute[] | undefined, inherited: boolean): void => {
      if (says(template, CKA_TOKEN, isTrue) || (inherited && !says(template, CKA_TOKEN, isFalse))) return;
      this.#objects.set(handleKey(h), { client, session });
    };
    if (command.op === 'generateKeyPair') {
      const pair = result as { publicKey: Handle; privateKey: Handle };
      note(pair.publicKey, command.publicTemplate, false);
      note(pair.privateKey, command.privateTemplate, false);
    } else if (command.op === 'copyObject') {
      // A copy is what its source is unless the template says: a token object's copy is one.
      note(result as Handle, command.template, !this.#objects.has(handleKey(command.object)));
    } else if (result instanceof Uint8Array) {
      note(result as Handle, templatesOf(command)[0], false);
    }
  }

  async #isPrivate(session: Handle, object: Handle): Promise<boolean> {
    try {
      const [attribute] = (await this.#execute({ op: 'getAttributes', session, object, types: [CKA_PRIVATE] })) as { value: Buffer | undefined }[];
      const value = attribute?.value;
      // Unreadable counts as private: refuse rather than leak.
      return value === undefined || value.length === 0 || value[0] !== 0;
    } catch {
      return true;
    }
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(work, work);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  #hash(pin: string): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      scrypt(pin, this.#salt, 32, { N: 16384, r: 8, p: 1 }, (error, key) => (error ? reject(error) : resolve(key)));
    });
  }

  /**
   * A context-specific login (a key with CKA_ALWAYS_AUTHENTICATE): only from a client logged
   * in itself, and only with the PIN that succeeded, so that a wrong one never reaches the
   * token (where repeated, it could lock the PIN for every client).
   */
  async #contextLogin(client: object, command: Extract<Command, { op: 'contextLogin' }>): Promise<unknown> {
    if (!this.#users.has(client)) throw failure(USER_NOT_LOGGED_IN, 'C_Login');
    const good = this.#goodPin;
    if (good !== undefined && !timingSafeEqual(await this.#hash(command.pin), good)) {
      this.#refusedLogins++;
      throw failure(PIN_INCORRECT, 'C_Login');
    }
    return this.#execute(command);
  }

  async #login(client: object, command: Extract<Command, { op: 'login' }>): Promise<unknown> {
    if (command.userType !== CKU_USER) {
      const result = await this.#execute(command);
      if (command.userType === CKU_SO) this.#officers.add(client);
      return result;
    }
    if (this.#users.has(client)) throw failure(USER_ALREADY_LOGGED_IN, 'C_Login');
    const hash = await this.#hash(command.pin);
    const good = this.#goodPin;
    const matches = good !== undefined && timingSafeEqual(hash, good);
    if (matches) {
      // The PIN is the one that succeeded: the token needs no login while others hold one.
      if (this.#users.size > 0) {
        this.#users.add(client);
        return undefined;
      }
    } else if (this.#badPins.has(hash.toString('hex')) || this.#users.size > 0) {
      // A PIN the token refused, or not the one that succeeded while clients are logged in on it.
      this.#refusedLogins++;
      throw failure(PIN_INCORRECT, 'C_Login');
    }
    // Nobody is logged in: a PIN other than the one that succeeded reaches the token once (the
    // PIN may have been changed outside this host); refused, it is remembered as wrong.
    this.#anchor ??= (await this.#execute({ op: 'openSession', slot: this.#slot })) as Handle;
    this.#tokenLogins++;
    try {
      await this.#execute(command);
    } catch (error) {
      const code = rvOf(error);
      // Any other refusal (logged in already, but not through this guard: the PIN was not
      // checked) leaves the client out, and says nothing of the PIN.
      if (code !== undefined && code >= 0xa0 && code <= 0xa7) {
        // Any CKR_PIN_*: remembered, so that it never reaches the token again.
        if (matches && code === PIN_INCORRECT) this.#goodPin = undefined;
        this.#badPins.add(hash.toString('hex'));
      }
      throw error;
    }
    // The PINs refused before stay refused: a wrong PIN never reaches the token twice.
    this.#goodPin = hash;
    this.#users.add(client);
    return undefined;
  }

  /**
   * A PIN change, only from a client logged in itself (the user for C_SetPIN, the security
   * officer for either): another client's login must not let it change the PIN. The hash
   * of a user PIN that succeeded follows the change.
   */
  async #changePin(client: object, command: Extract<Command, { op: 'initPin' | 'setPin' }>): Promise<unknown> {
    const officer = this.#officers.has(client);
    if (!officer && !(command.op === 'setPin' && this.#users.has(client))) throw failure(USER_NOT_LOGGED_IN, command.op === 'setPin' ? 'C_SetPIN' : 'C_InitPIN');
    const result = await this.#execute(command);
    if (command.op === 'initPin' || !officer) {
      this.#goodPin = await this.#hash(command.op === 'initPin' ? command.pin : command.newPin);
    }
    return result;
  }

  async #logout(client: object, command: Extract<Command, { op: 'logout' }>): Promise<unknown> {
    if (this.#officers.delete(client)) return this.#execute(command);
    if (!this.#users.delete(client)) throw failure(USER_NOT_LOGGED_IN, 'C_Logout');
    if (this.#users.size > 0) return undefined;
    return this.#execute(command);
  }

  #firstSession(): Handle | undefined {
    const any = this.#sessions.keys().next();
    return any.done ? undefined : Buffer.from(any.value, 'hex');
  }

  #dropSession(session: string): void {
    this.#sessions.delete(session);
    for (const [h, o] of this.#objects) if (o.session === session) this.#objects.delete(h);
  }

  /**
   * A client went away: its login ends (the token's too when it was the last one), its
   * sessions are closed (their session objects with them).
   */
  async release(client: object): Promise<void> {
    const sessions = [...this.#sessions].filter(([, owner]) => owner === client).map(([key]) => key);
    for (const key of sessions) {
      // Never under a command still running on it.
      await this.#busy.get(key)?.done;
      // Closed before it is forgotten: until then its session objects stay hidden from the others.
      await this.#execute({ op: 'closeSession', session: Buffer.from(key, 'hex') }).catch(() => undefined);
      this.#dropSession(key);
    }
    await this.#serial(async () => {
      const wasOfficer = this.#officers.delete(client);
      const wasUser = this.#users.delete(client);
      if (!wasOfficer && !(wasUser && this.#users.size === 0)) return;
      const session = this.#anchor ?? this.#firstSession();
      if (session !== undefined) await this.#execute({ op: 'logout', session }).catch(() => undefined);
    });
  }
}
