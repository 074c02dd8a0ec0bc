/**
 * An application that opens a group on member hosts and exits without closing it: for
 * the test that its hosts' socket directories are removed at exit. argv: the members as
 * JSON. Prints the socket directories as one JSON line, then calls process.exit(0).
 */
import { dirname } from 'node:path';
import { HaGroup } from '../../src/group/ha-group.js';
import { HostTransport } from '../../src/host/host-transport.js';
import { internalsOf } from '../../src/testing.js';

const members = JSON.parse(process.argv[2] ?? '[]') as Parameters<typeof HaGroup.open>[0]['members'];
const group = await HaGroup.open({ members, transport: 'host' });
const dirs = internalsOf(group).members.map((m) => (m.transport instanceof HostTransport ? dirname(m.transport.socketPath!) : ''));
process.stdout.write(`${JSON.stringify(dirs)}\n`, () => process.exit(0));
