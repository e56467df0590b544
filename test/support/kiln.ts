import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig, type KilnConfig } from '../../src/config.ts';
import { startKiln, type RunningKiln } from '../../src/server/serve.ts';
import { freshPostgresUrl, s3TestSettings } from './backends.ts';

export interface TestKiln {
  kiln: RunningKiln;
  url: string;
  dataDir: string;
  ownerToken: string;
  adminToken: string;
  workerToken: string;
  close(): Promise<void>;
}

export type StorageFlavour = 'embedded' | 'servers';

/**
 * A real Kiln API on a random port: embedded (PGlite + filesystem) or on the
 * real PostgreSQL and S3 servers. No local workers: tests drive the worker
 * protocol themselves or start workers explicitly.
 */
export async function startTestKiln(options: { flavour?: StorageFlavour; env?: Record<string, string>; config?: Partial<KilnConfig> } = {}): Promise<TestKiln> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'kiln-test-'));
  // Suites set the test bed's variables on process.env around a start (the test bed read them there before
  // its settings joined KilnConfig); they still reach the config this way, and nothing else of the shell does.
  const testbedVariables = Object.fromEntries(Object.entries(process.env).filter(([name]) => name.startsWith('KILN_TESTBED_')));
  const env: Record<string, string | undefined> = { ...testbedVariables, KILN_LOG_LEVEL: 'warn', ...options.env };
  if (options.flavour === 'servers') {
    const s3 = s3TestSettings();
    Object.assign(env, {
      DATABASE_URL: await freshPostgresUrl(),
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: s3.bucket,
      S3_REGION: s3.region,
      S3_ACCESS_KEY_ID: s3.accessKeyId,
      S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    });
  }
  const config = { ...loadConfig({ port: 0, dataDir, workers: 0 }, env), ...options.config };
  const kiln = await startKiln(config, { logger: pino({ level: 'warn' }), logRequests: false, sweepIntervalMs: 200 });
  const read = async (name: string) => (await readFile(path.join(dataDir, name), 'utf8')).trim();
  return {
    kiln,
    url: kiln.url,
    dataDir,
    ownerToken: await read('local-token'),
    adminToken: await read('admin-token'),
    workerToken: kiln.credentials.workerToken,
    async close() {
      await kiln.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ApiAnswer<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
  raw: Buffer;
}

/** A small fetch wrapper: JSON in, JSON (or bytes) out, never throws on 4xx/5xx. */
export async function call<T = Record<string, unknown>>(
  baseUrl: string,
  method: string,
  route: string,
  options: { token?: string; json?: unknown; body?: BodyInit; headers?: Record<string, string> } = {},
): Promise<ApiAnswer<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body = options.body;
  if (options.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.json);
  }
  const response = await fetch(new URL(route, baseUrl), { method, headers, body });
  const raw = Buffer.from(await response.arrayBuffer());
  let parsed: unknown = raw;
  if (response.headers.get('content-type')?.includes('application/json')) parsed = raw.length ? JSON.parse(raw.toString('utf8')) : undefined;
  else if (response.headers.get('content-type')?.startsWith('text/')) parsed = raw.toString('utf8');
  return { status: response.status, body: parsed as T, headers: response.headers, raw };
}
