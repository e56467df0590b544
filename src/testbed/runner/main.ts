/**
 * Entry of a local runner process (see local.ts): the API's pipe is fd 3.
 * The process ends when the pipe closes — a runner without its API has
 * nothing to do, and must not linger as an orphan.
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { serveRunner } from './runner.ts';
import { Peer } from './wire.ts';

const { values } = parseArgs({ options: { slots: { type: 'string', default: '2' } } });
const slots = Number(values.slots);
if (!Number.isInteger(slots) || slots < 1 || slots > 64) {
  process.stderr.write(`kiln test bed runner: --slots must be 1 to 64, got ${String(values.slots)}\n`);
  process.exit(2);
}
const socket = new net.Socket({ fd: Number(process.env.KILN_RUNNER_FD ?? 3), readable: true, writable: true });
const peer = new Peer(socket);
peer.onClose(() => process.exit(0));
process.once('SIGTERM', () => process.exit(0));
await serveRunner(peer, { slots, name: `local-${process.pid}` });
