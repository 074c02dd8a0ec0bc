/**
 * An EMULATED-capacity remote member host for the benchmark (started by bench/tls-hosts.ts
 * with child_process.fork): the same `TlsMemberHost` as `pkcs11-ha host --listen`, on
 * 127.0.0.1 and a free port, with every command run through a capacity emulator
 * (src/host/capacity-emulator.ts), so that it behaves like a network HSM of known capacity.
 *
 *   parent -> { type: 'init', name, modulePath, moduleEnv, label, tls, emulate }
 *   child  -> { type: 'listening', port } | { type: 'error', message }
 *
 * The host's log lines go to stderr (the parent keeps them). It stops on SIGTERM and when
 * the parent goes away (IPC disconnect).
 */
import { TlsMemberHost } from '../src/host/tls-member-host.js';
import type { TlsHostChildInit, TlsHostChildReply } from './tls-hosts.js';

let host: TlsMemberHost | undefined;
let stopping = false;

async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  try {
    await host?.close();
  } finally {
    process.exit(0);
  }
}

if (process.send === undefined) {
  console.error('bench/tls-host-child is started by bench/tls-hosts (child_process.fork), not by hand');
  process.exit(2);
}
process.once('message', (m: TlsHostChildInit) => {
  TlsMemberHost.start({
    member: m.name,
    modulePath: m.modulePath,
    moduleEnv: m.moduleEnv,
    token: { label: m.label },
    threads: 1,
    configPath: 'bench',
    listen: { host: '127.0.0.1', port: 0 },
    tls: m.tls,
    emulate: m.emulate,
    onModuleLost: () => void stop(),
  }).then(
    (started) => {
      host = started;
      process.send!({ type: 'listening', port: started.address.port } satisfies TlsHostChildReply);
    },
    (error: unknown) => {
      process.send!({ type: 'error', message: error instanceof Error ? error.message : String(error) } satisfies TlsHostChildReply, () => process.exit(1));
    },
  );
});
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => undefined); // the parent decides when its hosts stop (Ctrl-C reaches the whole group)
process.on('disconnect', () => void stop());
