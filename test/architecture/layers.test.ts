/**
 * The shape of src/: folders form layers (a folder imports only folders below it, so no
 * two folders import each other), files stay small, and the native pkcs11js addon is
 * loaded in one place. A change that breaks one of these rules must change this table on
 * purpose.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

/** Lowest first: a folder may import itself and the folders before it. */
const LAYERS = [
  'clock',
  'native',
  'errors',
  'pkcs11',
  'transport',
  'rpc',
  'host',
  'member',
  'events',
  'catalog',
  'routing',
  'replication',
  'login',
  'recovery',
  'slot',
  'admin',
  'observability',
  'group',
  'testbed',
  'cli',
  'facade',
] as const;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

const sources = files(SRC).map((path) => ({ path: relative(SRC, path), text: readFileSync(path, 'utf8') }));
const folderOf = (path: string) => (path.includes('/') ? path.split('/')[0]! : undefined);

/** Folders a file imports from (relative imports only, type imports included). */
function importedFolders(path: string, text: string): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
    const target = relative(SRC, join(SRC, dirname(path), m[1]!));
    const folder = folderOf(target);
    if (folder !== undefined) out.add(folder);
  }
  return [...out];
}

describe('src/ layout', () => {
  it('every folder of src/ has a place in the layer table', () => {
    const folders = new Set(sources.map((s) => folderOf(s.path)).filter((f) => f !== undefined));
    expect([...folders].filter((f) => !(LAYERS as readonly string[]).includes(f!))).toEqual([]);
  });

  it('a folder imports only itself and the folders below it (so no two folders import each other)', () => {
    const upward: string[] = [];
    for (const { path, text } of sources) {
      const from = folderOf(path);
      if (from === undefined) continue; // index.ts and the other entry points sit on top
      const level = LAYERS.indexOf(from as (typeof LAYERS)[number]);
      for (const to of importedFolders(path, text)) {
        if (LAYERS.indexOf(to as (typeof LAYERS)[number]) > level) upward.push(`${path} -> ${to}/`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('no file of src/ is over 500 lines, and the group facade stays under 300', () => {
    const lines = (text: string) => text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    expect(sources.filter((s) => lines(s.text) > 500).map((s) => `${s.path}: ${lines(s.text)}`)).toEqual([]);
    expect(lines(sources.find((s) => s.path === 'group/ha-group.ts')!.text)).toBeLessThan(300);
  });

  it('the pkcs11js addon is loaded in one place', () => {
    const loaders = sources.filter((s) => /require\(\s*'pkcs11js'\s*\)|import\(\s*'pkcs11js'\s*\)|^import\s+(?!type\b)[^;]*from\s+'pkcs11js'/m.test(s.text));
    expect(loaders.map((s) => s.path)).toEqual(['native/pkcs11js.ts']);
  });
});
