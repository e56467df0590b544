/**
 * Worker-thread host of the component engine: one message at a time, in
 * order (the runner's deadline covers the message at the head). Besides its
 * replies it posts outgoing calls (bridge.ts), answered on their own ports.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { bridgeToRunner } from './bridge.ts';
import { ComponentEngine } from './engine.ts';
import type { EngineMessage, EngineReply } from './protocol.ts';

// Outgoing calls go to the thread that owns this worker, which performs them (bridge.ts).
const send = bridgeToRunner((message, transfer) => parentPort?.postMessage(message, transfer));
const engine = new ComponentEngine((workerData as { toolchainDir: string }).toolchainDir, send);
let queue: Promise<void> = Promise.resolve();

parentPort?.on('message', (message: EngineMessage) => {
  queue = queue.then(async () => {
    let reply: EngineReply;
    try {
      reply = message.type === 'prepare' ? await engine.prepare(message) : engine.handle(message);
    } catch (error) {
      reply = { type: 'failed', code: 'internal', message: error instanceof Error ? error.message : String(error) };
    }
    parentPort?.postMessage(reply);
  });
});
