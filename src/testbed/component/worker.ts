/**
 * Worker-thread host of the component engine: one message at a time, in
 * order (the runner's deadline covers the message at the head).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ComponentEngine } from './engine.ts';
import type { EngineMessage, EngineReply } from './protocol.ts';

const engine = new ComponentEngine((workerData as { toolchainDir: string }).toolchainDir);
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
