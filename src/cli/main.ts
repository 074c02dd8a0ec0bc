#!/usr/bin/env node
/**
 * The `pkcs11-ha` command line: a subcommand per task, each acting on a group opened from
 * `--config <group.json>` or on a running application's group through its admin endpoint
 * (`--connect <socket>`). `pkcs11-ha <command> --help` tells each one's options.
 *
 * Exit codes: 0 healthy, 1 degraded (a member failed, was refused, or owes something),
 * 2 bad usage or bad config; a failure prints one line on stderr, never a stack trace
 * nor a PIN.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Argument, Command, CommanderError, Option } from 'commander';
import { addMemberCommand, checkCommand, hostCommand, initCommand, npmScriptCommand, recoverCommand, removeMemberCommand, standbyCommand, statusCommand, syncCommand, version, type Output } from './commands.js';
import { ExitCode, UsageError, exitCodeOf, reasonLine } from './exit-codes.js';
import type { TargetOptions } from './group-access.js';

const EXIT_CODES_HELP = `
Exit codes: 0 healthy, 1 degraded (a member failed, was refused, or owes something),
2 bad usage or bad configuration.`;

const TARGET_HELP = `
Acts on the group opened from --config for this command only (steering it lasts as long
as the command), or on the group a running application serves through its admin
endpoint (--connect <socket>; see the group's \`admin\` option).`;

function positiveInteger(what: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`${what} must be a positive integer, got ${JSON.stringify(value)}`);
    return n;
  };
}

/** Adds `--config` and `--connect` to a command. */
function targeted(command: Command): Command {
  return command
    .option('-c, --config <file>', 'the group configuration file (JSON) to open the group from')
    .option('--connect <socket>', "a running application's admin endpoint (Unix socket)")
    .addHelpText('after', TARGET_HELP + EXIT_CODES_HELP);
}

/** The program, with its actions writing to `io` and setting `exit`. */
function program(io: Output, exit: { code: number }): Command {
  const run = (act: () => Promise<number>) => async () => {
    exit.code = await act();
  };
  const p = new Command('pkcs11-ha')
    .description('Operate a pkcs11-ha group: several PKCS#11 tokens joined into one virtual slot.')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help (also for each command: pkcs11-ha <command> --help)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void io.out.write(s),
      writeErr: (s) => void io.err.write(s),
      // One line: commander puts its "(Did you mean --json?)" on a line of its own.
      outputError: (s, write) => write(`pkcs11-ha: ${s.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')}\n`),
    })
    .showSuggestionAfterError(true)
    .addHelpText('after', EXIT_CODES_HELP);

  p.command('init')
    .description("give every member the group's domain key (the security domain ceremony; needs each member's soPin in the config)")
    .option('-c, --config <file>', 'the group configuration file (JSON)')
    .option('--connect <socket>', 'not accepted: the ceremony needs the soPins, which no admin endpoint takes')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((o: TargetOptions) => run(() => initCommand(o, io))());

  targeted(p.command('status').description('print the group status: a table on a terminal, JSON otherwise'))
    .option('--json', 'JSON even on a terminal (one line per refresh with --watch)')
    .addOption(new Option('-w, --watch [ms]', 'refresh every <ms> (default 1000) until Ctrl-C').argParser(positiveInteger('--watch')))
    .addOption(new Option('--count <n>', 'with --watch: stop after n refreshes').argParser(positiveInteger('--count')))
    .action((o: TargetOptions & { json?: boolean; watch?: number | true; count?: number }) => run(() => statusCommand({ ...o, watch: o.watch === true ? 1000 : o.watch }, io))());

  targeted(p.command('check').description('health check: one line, exit 0 when healthy, 1 when degraded'))
    .option('--json', 'print { healthy, problems, primary } as JSON')
    .action((o: TargetOptions & { json?: boolean }) => run(() => checkCommand(o, io))());

  targeted(
    p
      .command('sync')
      .description("settle what members owe (the journal's replicas, deletions, attribute changes), with a progress bar on a terminal; then print the status. With --config it logs in with the members' userPin"),
  ).action((o: TargetOptions) => run(() => syncCommand(o, io))());

  targeted(p.command('recover').description('recover a failed member now: reconnect, log in, check its domain key, settle what it owes').argument('<member>', 'the member name')).action(
    (member: string, o: TargetOptions) => run(() => recoverCommand(member, o, io))(),
  );

  targeted(
    p
      .command('standby')
      .description('make a member standby (kept current, takes load only when no active member is left) or active again')
      .argument('<member>', 'the member name')
      .addArgument(new Argument('<on|off>', 'on: standby; off: active').choices(['on', 'off'])),
  ).action((member: string, on: 'on' | 'off', o: TargetOptions) => run(() => standbyCommand(member, on, o, io))());

  targeted(
    p
      .command('add-member')
      .description("add a member online: every token object is copied to it before it serves. It takes no PIN: the group's login (or, with --config, the config's userPin) logs it in")
      .option('--module <path>', 'its PKCS#11 module')
      .option('--module-env <NAME=VALUE...>', 'environment its module reads at C_Initialize (repeatable)')
      .option('--label <label>', 'its token label')
      .option('--serial <serial>', 'its token serial')
      .option('--name <name>', 'its member name (default: the label or serial)')
      .addOption(new Option('--role <role>', 'its role').choices(['active', 'standby']))
      .option('--member <json>', 'the member configuration as JSON instead (no PINs)'),
  ).action((o) => run(() => addMemberCommand(o, io))());

  targeted(p.command('remove-member').description('remove a member online: it takes no more traffic and its debts are forgotten').argument('<member>', 'the member name')).action(
    (member: string, o: TargetOptions) => run(() => removeMemberCommand(member, o, io))(),
  );

  p.command('host')
    .description('run a remote member host: serve one token over TLS 1.3 to the application servers whose client certificates the CA signed')
    .option('--listen <address:port>', 'where to listen, e.g. 0.0.0.0:7000 (port 0: any free port, printed)')
    .option('-c, --config <file>', 'the host configuration file (JSON): module, token, tls { ca, cert, key, allow }')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((o: { listen?: string; config?: string }) => run(() => hostCommand(o, io))());

  for (const [name, what] of [
    ['demo', 'run the demo (npm run demo in a clone of the repository): 3 active + 1 standby SoftHSM2 members, failover under load, standby promoted, resync verified, a timeline chart'],
    ['bench', 'run the benchmarks (npm run bench in a clone of the repository; e.g. pkcs11-ha bench -- --quick)'],
  ] as const) {
    p.command(name)
      .description(what)
      .argument('[args...]', 'passed on to the script (after --)')
      .option('--dry-run', 'print the command instead of running it')
      .addHelpText('after', EXIT_CODES_HELP)
      .action((args: string[], o: { dryRun?: boolean }) => run(() => npmScriptCommand(name, args, o.dryRun === true, io))());
  }
  return p;
}

/**
 * Runs the CLI with `argv` (without node and the script); returns the exit code.
 *
 * @example
 * process.exitCode = await main(['status', '--connect', '/run/app/pkcs11-ha.sock']);
 */
export async function main(argv: readonly string[], io: Output = { out: process.stdout, err: process.stderr }): Promise<number> {
  const exit = { code: ExitCode.ok as number };
  const cli = program(io, exit);
  try {
    await cli.parseAsync([...argv], { from: 'user' });
    return exit.code;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and --version end with 0; any other parse failure was already told in one line.
      return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    const command = cli.args[0] ?? argv.find((a) => !a.startsWith('-')) ?? '';
    io.err.write(reasonLine(command, error));
    return exitCodeOf(error);
  }
}

/** True when this file is the process's entry (not when imported by a test or the bin launcher). */
function isEntry(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (isEntry()) process.exitCode = await main(process.argv.slice(2));
