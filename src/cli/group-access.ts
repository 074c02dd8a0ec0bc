/**
 * What a command acts on: a group the CLI opens from `--config <file>` for the length of
 * the command, or the group a running application serves through its admin endpoint
 * (`--connect <socket>`). Both answer the same calls.
 */
import { AdminClient } from '../admin/admin-client.js';
import { HaError } from '../errors/ha-error.js';
import type { ResyncProgressEvent } from '../events/group-events.js';
import { resolveGroupConfig, type MemberConfig } from '../group/group-config.js';
import type { GroupStatus } from '../group/group-status.js';
import { HaGroup } from '../group/ha-group.js';
import { loadConfigFile } from './config-file.js';
import { UsageError } from './exit-codes.js';

/** The group a command acts on. */
export interface GroupAccess {
  /** `'config'`: opened by this command, gone when it ends; `'connect'`: an application's. */
  readonly kind: 'config' | 'connect';
  status(): Promise<GroupStatus>;
  recover(member: string): Promise<boolean>;
  setStandby(member: string, standby: boolean): Promise<void>;
  addMember(config: MemberConfig): Promise<string>;
  removeMember(member: string): Promise<void>;
  /** Settles what serving members owe; `onProgress` sees each member's resync. */
  settle(onProgress: (event: ResyncProgressEvent) => void): Promise<void>;
  close(): Promise<void>;
}

/** Where a command finds its group: exactly one of the two options. */
export interface TargetOptions {
  readonly config?: string;
  readonly connect?: string;
}

/**
 * When a group opened from a file logs in (with the first `userPin` of its members):
 * `'required'` fails without one, `'if-pin'` logs in when there is one, `'never'` does not.
 */
export type LoginNeed = 'required' | 'if-pin' | 'never';

/**
 * Opens the group of `--config` or connects to the endpoint of `--connect`.
 * @throws {@link UsageError} when neither or both are given
 */
export async function openAccess(options: TargetOptions, login: LoginNeed): Promise<GroupAccess> {
  if ((options.config === undefined) === (options.connect === undefined)) {
    throw new UsageError('give either --config <group.json> (open the group here) or --connect <socket> (a running application)');
  }
  if (options.connect !== undefined) return connectAccess(await AdminClient.connect(options.connect));
  return configAccess(loadConfigFile(options.config!), login);
}

async function configAccess(config: ReturnType<typeof loadConfigFile>, login: LoginNeed): Promise<GroupAccess> {
  // A PIN may come from a variable or a file: the resolved config has read it.
  const pin = resolveGroupConfig(config).members.find((m) => m.userPin !== undefined)?.userPin?.reveal();
  if (login === 'required' && pin === undefined) throw new HaError('ERR_CONFIG', 'this command logs in: give the members a userPin in the config');
  // The CLI's own group never serves an admin endpoint: the application's does.
  const group = await HaGroup.open({ ...config, admin: undefined });
  const session = group.slot.openSession();
  const logIn = async () => {
    if (pin !== undefined && !group.status().loggedIn) await session.login(pin);
  };
  try {
    if (login === 'if-pin') await logIn();
  } catch (error) {
    await group.close();
    throw error;
  }
  return {
    kind: 'config',
    status: async () => group.status(),
    recover: (member) => group.recover(member),
    setStandby: async (member, standby) => group.setStandby(member, standby),
    addMember: (member) => group.addMember(member),
    removeMember: (member) => group.removeMember(member),
    settle: async (onProgress) => {
      // Logging in settles what the journal says members owe, before it returns.
      group.on('resyncProgress', onProgress);
      try {
        await logIn();
      } finally {
        group.off('resyncProgress', onProgress);
      }
    },
    close: () => group.close(),
  };
}

function connectAccess(admin: AdminClient): GroupAccess {
  return {
    kind: 'connect',
    status: async () => (await admin.request('status', {})) as GroupStatus,
    recover: (member) => admin.request('recover', { member }),
    setStandby: async (member, standby) => void (await admin.request('standby', { member, standby })),
    addMember: (config) => admin.request('addMember', { config: config as unknown as Record<string, unknown> }),
    removeMember: async (member) => void (await admin.request('removeMember', { member })),
    settle: async (onProgress) => void (await admin.request('settle', {}, onProgress)),
    close: async () => admin.close(),
  };
}
