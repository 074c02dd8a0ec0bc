/**
 * A second application server for tests: a child process that opens its own group (its
 * own member host processes) from the configuration in `APP_CONFIG`, logs in with
 * `APP_PIN`, and answers requests over IPC (see app-process.ts). Events that tests count
 * are sent as they happen.
 */
import { HaGroup } from '../../src/group/ha-group.js';
import type { GroupConfig } from '../../src/group/group-config.js';
import { pkcs11js as P } from '../../src/native/pkcs11js.js';
import { findOn } from '../../src/replication/member-objects.js';
import { internalsOf } from '../../src/testing.js';

type Request =
  | { id: number; op: 'find'; label: string }
  | { id: number; op: 'encrypt' | 'decrypt'; label: string; iv: Buffer; data: Buffer }
  | { id: number; op: 'onToken'; index: number; label: string }
  | { id: number; op: 'status' }
  | { id: number; op: 'close' };

const send = (message: unknown) => process.send?.(message);

const group = await HaGroup.open(JSON.parse(process.env.APP_CONFIG!) as GroupConfig);
const session = group.slot.openSession();
await session.login(process.env.APP_PIN!);
group.on('resyncProgress', (e) => send({ event: 'resyncProgress', ...e }));

async function handle(r: Request): Promise<unknown> {
  switch (r.op) {
    case 'find': {
      const handles = await session.findObjects({ label: r.label });
      return { count: handles.length, holders: handles.map((h) => group.describeObject(h)?.holders ?? []) };
    }
    case 'encrypt':
    case 'decrypt': {
      const [key] = await session.findObjects({ label: r.label });
      if (key === undefined) throw new Error(`no key labelled ${r.label}`);
      return r.op === 'encrypt' ? session.encrypt({ name: 'AES_GCM', iv: r.iv }, key, r.data) : session.decrypt({ name: 'AES_GCM', iv: r.iv }, key, r.data);
    }
    case 'onToken':
      // Objects so labelled on that member's token, seen through this process's host of it.
      return (await findOn(internalsOf(group).members[r.index]!, [{ type: P.CKA_LABEL, value: Buffer.from(r.label) }, { type: P.CKA_TOKEN, value: true }], undefined)).length;
    case 'status':
      return group.status();
    case 'close':
      await group.close();
      setImmediate(() => process.exit(0));
      return null;
  }
}

process.on('message', (r: Request) => {
  handle(r).then(
    (result) => send({ id: r.id, result }),
    (error: unknown) => send({ id: r.id, error: { message: (error as Error).message, code: (error as { code?: unknown }).code } }),
  );
});
send({ ready: true });
