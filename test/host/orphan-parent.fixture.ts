/**
 * A parent process for the "host exits when its parent goes away" test: it starts a
 * member host for the token given in argv, prints the host's pid and socket path as one
 * JSON line, and waits to be killed.
 */
import { HostTransport } from '../../src/host/host-transport.js';

const [modulePath, conf, label] = process.argv.slice(2);
if (modulePath === undefined || conf === undefined || label === undefined) throw new Error('usage: orphan-parent <module> <conf> <label>');
const transport = new HostTransport({
  member: label,
  modulePath,
  moduleEnv: { SOFTHSM2_CONF: conf },
  token: { label },
  threads: 1,
  configPath: 'members[0]',
});
await transport.connect();
process.stdout.write(`${JSON.stringify({ pid: transport.pid, socketPath: transport.socketPath })}\n`);
// Stay alive (the transport's socket keeps the event loop busy) until the test kills us.
