/** The inspection thread (see inspect-thread.ts): modules in, one at a time; their facts or why they are invalid out. */
import { parentPort, threadId } from 'node:worker_threads';
import { UserError } from '../errors.ts';
import { inspectModule } from '../wasm/inspect.ts';
import type { InspectReply, InspectRequest } from './inspect-thread.ts';

parentPort?.on('message', (request: InspectRequest) => {
  let reply: InspectReply;
  try {
    reply = { id: request.id, ok: true, info: inspectModule(new Uint8Array(request.bytes)), threadId };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    reply = { id: request.id, ok: false, invalid: error instanceof UserError, reason };
  }
  parentPort?.postMessage(reply);
});
