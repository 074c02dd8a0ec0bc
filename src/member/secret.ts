/**
 * A PIN or other secret held in memory. It prints as `<redacted>` everywhere: template
 * strings, JSON, util.inspect, console.log and error messages.
 */
import { inspect } from 'node:util';

const values = new WeakMap<Secret, string>();

/** A secret string that never prints. Read it with {@link Secret.reveal}, only where a module needs it. */
export class Secret {
  private constructor() {}

  /** Wraps a string. */
  static of(value: string): Secret {
    const s = new Secret();
    values.set(s, value);
    return s;
  }

  /** The secret itself: pass it straight to the module, never to a log or an error. */
  reveal(): string {
    return values.get(this) ?? '';
  }

  toString(): string {
    return '<redacted>';
  }

  toJSON(): string {
    return '<redacted>';
  }

  [inspect.custom](): string {
    return 'Secret(<redacted>)';
  }
}
