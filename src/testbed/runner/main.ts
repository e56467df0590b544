/**
 * Entry of a local runner process (see local.ts): the API's pipe is fd 3.
 * The process ends when the pipe closes — a runner without its API has
 * nothing to do, and must not linger as an orphan.
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { serveRunner } from './runner.ts';
import { Peer } from './wire.ts';

// Everything this process needs comes from its parent: the slots and the pipe here, the settings over the pipe.
const { values } = parseArgs({ options: { slots: { type: 'string', default: '2' }, fd: { type: 'string', default: '3' } } });
const slots = Number(values.slots);
const fd = Number(values.fd);
if (!Number.isInteger(slots) || slots < 1 || slots > 64 || !Number.isInteger(fd) || fd < 3) {
  process.stderr.write(`kiln test bed runner: --slots must be 1 to 64 and --fd a descriptor ≥ 3, got ${String(values.slots)} and ${String(values.fd)}\n`);
  process.exit(2);
}
const socket = new net.Socket({ fd, readable: true, writable: true });
const peer = new Peer(socket);
peer.onClose(() => process.exit(0));
process.once('SIGTERM', () => process.exit(0));
await serveRunner(peer, { slots, name: `local-${process.pid}` });
