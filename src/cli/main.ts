#!/usr/bin/env node
/**
 * The `pkcs11-ha` command line.
 *
 *   pkcs11-ha init   --config group.json   give every member the group's domain key
 *   pkcs11-ha status --config group.json   open the group and print its status as JSON
 *   pkcs11-ha sync   --config group.json   settle what members owe (from the journal), print status
 *
 * The config file is a JSON `GroupConfig` (members with module, token, role, soPin,
 * userPin; see the README's configuration table). PINs are never printed.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { HaGroup } from '../group/ha-group.js';
import type { GroupConfig } from '../group/group-config.js';
import { HaError } from '../errors/ha-error.js';

const USAGE = `usage: pkcs11-ha <command> --config <group.json>

commands:
  init     give every member the group's domain key (needs each member's soPin)
  status   open the group and print its status as JSON
  sync     open the group, log in with the members' userPin and settle what members owe
           (the journal at journalPath), then print the status; exit 1 if anything stays owed
`;

function readConfig(path: string | undefined): GroupConfig {
  if (path === undefined) throw new HaError('ERR_CONFIG', '--config <group.json> is required');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new HaError('ERR_CONFIG', `cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as GroupConfig;
  } catch (error) {
    // Node quotes a piece of the text in JSON errors, which may be a PIN: keep only where.
    const where = /position \d+(?: \(line \d+ column \d+\))?/.exec((error as Error).message)?.[0];
    throw new HaError('ERR_CONFIG', `${path} is not valid JSON${where ? ` (at ${where})` : ''}`);
  }
}

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const { positionals, values } = parseArgs({ args: [...argv], allowPositionals: true, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } });
  const command = positionals[0];
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  try {
    if (command === 'init') {
      const result = await HaGroup.initDomain(readConfig(values.config));
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return 0;
    }
    if (command === 'status') {
      const group = await HaGroup.open(readConfig(values.config));
      try {
        process.stdout.write(`${JSON.stringify(group.status(), (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v), 2)}\n`);
      } finally {
        await group.close();
      }
      return 0;
    }
    if (command === 'sync') {
      const config = readConfig(values.config);
      const pin = config.members?.find((m) => m.userPin !== undefined)?.userPin;
      if (pin === undefined) throw new HaError('ERR_CONFIG', 'sync needs a userPin in the members of the config, to log in');
      const group = await HaGroup.open(config);
      try {
        // Logging in settles debts read back from the journal, before it returns.
        await group.slot.openSession().login(pin);
        const status = group.status();
        process.stdout.write(`${JSON.stringify(status, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v), 2)}\n`);
        return Object.keys(status.owed).length === 0 ? 0 : 1;
      } finally {
        await group.close();
      }
    }
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
    return 2;
  } catch (error) {
    process.stderr.write(`pkcs11-ha ${command}: ${HaError.is(error) ? `${error.code}: ${error.message}` : String(error)}\n`);
    return 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/cli/main.ts') || process.argv[1]?.endsWith('/cli/main.js') || process.argv[1]?.endsWith('/pkcs11-ha')) {
  process.exitCode = await main(process.argv.slice(2));
}
