/** The inspection thread (see inspect-thread.ts): one module in, its facts or why it is invalid out. */
import { parentPort, threadId } from 'node:worker_threads';
import { UserError } from '../errors.ts';
import { inspectModule } from '../wasm/inspect.ts';
import type { InspectReply, InspectRequest } from './inspect-thread.ts';

parentPort?.once('message', (request: InspectRequest) => {
  let reply: InspectReply;
  try {
    reply = { ok: true, info: inspectModule(new Uint8Array(request.bytes)), threadId };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    reply = { ok: false, invalid: error instanceof UserError, reason };
  }
  parentPort?.postMessage(reply);
});
