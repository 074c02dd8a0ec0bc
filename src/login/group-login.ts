/**
 * Login across the group. PKCS#11 login state is token-wide, so the group logs in on
 * every member; a wrong PIN tried on every member at once could lock every token, so the
 * PIN is verified on ONE member first and only then used on the others.
 */
import type { Catalog } from '../catalog/catalog.js';
import { classifyError } from '../errors/classification.js';
import { NoMemberAvailableError, Pkcs11Error } from '../errors/ha-error.js';
import { isAmbiguousAnswer } from '../errors/return-code-rules.js';
import type { Member } from '../member/member.js';
import type { Membership } from '../member/membership.js';
import { Secret } from '../member/secret.js';
import { pkcs11js } from '../native/pkcs11js.js';
import { changePinOnEvery } from './pin-change.js';

/** Who is logged in on the group. */
export interface LoginState {
  readonly userType: number;
  readonly pin: Secret;
}

/** Collaborators of {@link GroupLogin}. */
export interface GroupLoginOptions {
  readonly membership: Membership;
  /** Member handles of private objects change at the next login: the catalog forgets them at logout. */
  readonly catalog: Catalog;
}

/** The group's login state, and bringing each member in line with it. */
export class GroupLogin {
  readonly #o: GroupLoginOptions;
  #state: LoginState | undefined;
  /** The user PIN every member has since a PIN change through the group: it overrides the members' configured `userPin`. */
  #userPin: Secret | undefined;

  constructor(options: GroupLoginOptions) {
    this.#o = options;
  }

  /** True while the application is logged in on the group. */
  get loggedIn(): boolean {
    return this.#state !== undefined;
  }

  /**
   * Verifies the PIN on one serving member (the primary first), then logs in on the others.
   * A member that refuses a PIN another member accepted is failed, not the login.
   *
   * @throws {@link Pkcs11Error} the verifier's answer (CKR_PIN_INCORRECT, ...) or CKR_USER_ALREADY_LOGGED_IN
   * @throws {@link NoMemberAvailableError} when no member could verify the PIN
   */
  async login(userType: number, pin: string): Promise<void> {
    if (this.#state !== undefined) {
      throw new Pkcs11Error('CKR_USER_ALREADY_LOGGED_IN', pkcs11js.CKR_USER_ALREADY_LOGGED_IN, 'C_Login', undefined, 'caller');
    }
    // A member that fails under us (not over the PIN) passes the turn to the next one. A
    // token already logged in (by other code sharing its module) answers "already logged
    // in" whatever the PIN: it proves nothing, so the turn passes on too; logging it out
    // would pull the login from under that code.
    const members = this.#o.membership.serving();
    let verifier: Member | undefined;
    const already: Member[] = [];
    let lastError: unknown;
    for (const m of members) {
      try {
        if (await m.login(userType, pin)) {
          verifier = m;
          break;
        }
        already.push(m);
      } catch (error) {
        // An ambiguous answer (CKR_GENERAL_ERROR) is the caller's only if the member then
        // answers its probe; one that fails it is sick, and its answer no verdict on the PIN
        // (the chaos run: a login failed so, and the application stayed logged out).
        if (classifyError(error) !== 'member' && !(isAmbiguousAnswer(error) && !(await m.probe()))) throw error;
        lastError = error;
      }
    }
    if (verifier === undefined && already.length === 0) throw new NoMemberAvailableError('no member could verify the PIN', { cause: lastError });
    this.#state = { userType, pin: Secret.of(pin) };
    // With no verifier (every reachable member logged in already), the PIN reaches no token.
    const checked = verifier;
    if (checked === undefined) return;
    await Promise.all(
      members
        .filter((m) => m !== checked && !already.includes(m))
        .map(async (m) => {
          try {
            await m.login(userType, pin);
          } catch (error) {
            // The PIN was good on the verifier: a member refusing it is out of step with
            // the group, not the caller's mistake. Take it out rather than fail the login.
            m.fail(`login refused after the PIN was verified on ${checked.name}: ${(error as Error).message}`, error as Error);
          }
        }),
    );
  }

  /**
   * Logs out of every serving member.
   *
   * @throws {@link Pkcs11Error} CKR_USER_NOT_LOGGED_IN when nobody is logged in
   */
  async logout(): Promise<void> {
    if (this.#state === undefined) {
      throw new Pkcs11Error('CKR_USER_NOT_LOGGED_IN', pkcs11js.CKR_USER_NOT_LOGGED_IN, 'C_Logout', undefined, 'caller');
    }
    this.#state = undefined;
    await Promise.allSettled(this.#o.membership.serving().map((m) => m.logout()));
    // Tokens hand out new handles for private objects after the next login: forget the
    // member handles; virtual handles stay and are matched again on first use.
    this.#o.catalog.forgetHolders();
  }

  /**
   * C_SetPIN on every member or on none: the logged-in user's PIN (the security officer's
   * when the SO is logged in; the user's, checked against `oldPin`, when nobody is). The
   * PIN kept for recovery logins follows.
   *
   * @throws {@link MemberUnreachableError} a member is down (nothing changed) or failed during the change (rolled back)
   * @throws {@link Pkcs11Error} CKR_PIN_INCORRECT (wrong old PIN, seen by one member only), CKR_PIN_LEN_RANGE, ...
   */
  async setPin(oldPin: string, newPin: string): Promise<void> {
    await changePinOnEvery(this.#members(), { kind: 'set', oldPin, newPin });
    const state = this.#state;
    if (state?.userType === pkcs11js.CKU_SO) {
      this.#state = { userType: state.userType, pin: Secret.of(newPin) };
      return;
    }
    this.#userPin = Secret.of(newPin);
    if (state !== undefined) this.#state = { userType: state.userType, pin: this.#userPin };
  }

  /**
   * C_InitPIN on every member or on none: the security officer, logged in, sets the user
   * PIN. A rollback sets back the user PIN the group knows (a change made through it, or
   * the member's configured `userPin`); where it knows none, the error says so.
   *
   * @throws {@link Pkcs11Error} CKR_USER_NOT_LOGGED_IN unless the security officer is logged in
   * @throws {@link MemberUnreachableError} a member is down (nothing changed) or failed during the change
   */
  async initPin(pin: string): Promise<void> {
    if (this.#state?.userType !== pkcs11js.CKU_SO) {
      throw new Pkcs11Error('CKR_USER_NOT_LOGGED_IN', pkcs11js.CKR_USER_NOT_LOGGED_IN, 'C_InitPIN', undefined, 'caller');
    }
    const known = this.#userPin;
    await changePinOnEvery(this.#members(), { kind: 'init', pin, previous: (m) => (known ?? m.userPin)?.reveal() });
    this.#userPin = Secret.of(pin);
  }

  #members(): Member[] {
    return this.#o.membership.all.filter((m) => m.state.kind !== 'removed');
  }

  /** Forgets the login without telling the members (the group is closing). */
  clear(): void {
    this.#state = undefined;
  }

  /** True when the member's login state differs from the group's. */
  outOfStep(member: Member): boolean {
    return (this.#state !== undefined) !== member.loggedIn;
  }

  /**
   * Brings a recovering member's login in line with the group's: logged in (with its own
   * configured `userPin` when it has one, else the application's PIN) exactly while the
   * group is.
   *
   * @throws {@link Pkcs11Error} CKR_PIN_* when the member refuses the PIN (retrying could lock the token)
   */
  async match(member: Member): Promise<void> {
    const state = this.#state;
    if (state === undefined) {
      if (member.loggedIn) await member.logout();
      return;
    }
    if (member.loggedIn) return;
    // A member's configured userPin is its user PIN until a PIN change through the group.
    const pin = state.userType === pkcs11js.CKU_USER ? (this.#userPin ?? member.userPin ?? state.pin) : state.pin;
    await member.login(state.userType, pin.reveal());
  }
}
