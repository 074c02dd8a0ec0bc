import { expect } from 'vitest';

import { HaError, InvalidArgumentError } from '../../src/errors/ha-error.js';

/** Runs `fn`, expects an InvalidArgumentError (ERR_INVALID_ARGUMENT) and returns its message. */
export function invalid(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(HaError.is(error)).toBe(true);
    expect((error as HaError).code).toBe('ERR_INVALID_ARGUMENT');
    return (error as Error).message;
  }
  throw new Error('expected an InvalidArgumentError, nothing was thrown');
}
