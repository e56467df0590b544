/**
 * Puts one object into a filesystem store and exits: run by
 * durable-dirs.test.ts under strace, which watches its fsyncs.
 * argv: <root> <key> <writer threads> <"buffer" | "stream">
 */
import { Readable } from 'node:stream';
import { FsObjectStore } from '../../../src/store/objects/fs-store.ts';

const [root, key, threads, body] = process.argv.slice(2) as [string, string, string, string];
const store = new FsObjectStore({ root, writerThreads: Number(threads) });
const bytes = Buffer.from('durable bytes');
await store.put(key, body === 'stream' ? Readable.from([bytes]) : bytes);
await store.close();
