/**
 * Every error a caller may catch is exported and documented: each class of src/ that extends
 * HaError is a runtime export of pkcs11-ha, its JSDoc opens with its stable code, and every
 * HaErrorCode belongs to such a class (ERR_TESTBED aside: a plain HaError of the testbed entry).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as main from '../../src/index.js';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

interface ErrorClass {
  readonly name: string;
  readonly file: string;
  readonly doc: string;
  readonly code: string | undefined;
}

/** The classes of src/ that extend HaError, with the JSDoc just above each and the code its constructor passes. */
function errorClasses(): ErrorClass[] {
  return sources(SRC).flatMap((file) => {
    const text = readFileSync(file, 'utf8');
    return [...text.matchAll(/(\/\*\*(?:(?!\*\/)[\s\S])*\*\/)\s*export class (\w+) extends HaError \{([\s\S]*?)\n\}/g)].map((m) => ({
      name: m[2]!,
      file: file.slice(SRC.length + 1),
      doc: m[1]!,
      code: /super\('(ERR_[A-Z_0-9]+)'/.exec(m[3]!)?.[1],
    }));
  });
}

describe('the error classes', () => {
  const classes = errorClasses();

  it('are found in src/ (the scan works)', () => {
    expect(classes.map((c) => c.name)).toEqual(expect.arrayContaining(['ReplicationError', 'Pkcs11Error', 'DomainError', 'JournalError', 'AdminError']));
    expect(classes.every((c) => c.code !== undefined)).toBe(true);
  });

  it('are each exported by pkcs11-ha', () => {
    const exported = new Set(Object.keys(main));
    expect(classes.filter((c) => !exported.has(c.name)).map((c) => `${c.name} (${c.file})`)).toEqual([]);
  });

  it("each have JSDoc that opens with their code, e.g. 'Code `ERR_REPLICATION`: ...'", () => {
    const undocumented = classes.filter((c) => !new RegExp(`^/\\*\\*\\s*\\*?\\s*Code \`${c.code}\``).test(c.doc));
    expect(undocumented.map((c) => `${c.name} (${c.file})`)).toEqual([]);
  });

  it('cover every HaErrorCode but ERR_TESTBED', () => {
    const union = /export type HaErrorCode =([^;]*);/.exec(readFileSync(join(SRC, 'errors', 'ha-error.ts'), 'utf8'))![1]!;
    const codes = [...union.matchAll(/'(ERR_[A-Z_0-9]+)'/g)].map((m) => m[1]!);
    expect(codes).toContain('ERR_REPLICATION');
    const covered = new Set(classes.map((c) => c.code));
    expect(codes.filter((c) => !covered.has(c))).toEqual(['ERR_TESTBED']);
  });

  it('ReplicationError is thrown as its class with code ERR_REPLICATION', () => {
    const error = new main.ReplicationError('too few');
    expect(error).toBeInstanceOf(main.HaError);
    expect(error).toMatchObject({ code: 'ERR_REPLICATION', name: 'ReplicationError' });
    expect(main.HaError.is(error)).toBe(true);
  });
});
