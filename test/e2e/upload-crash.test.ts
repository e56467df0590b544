import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { eq, inArray } from 'drizzle-orm';
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/store/metadata/database.ts';
import { builds, jobs, versions } from '../../src/store/metadata/schema.ts';
import { createObjectStore } from '../../src/store/objects/index.ts';
import { freshPostgresUrl } from '../support/backends.ts';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const KILN = path.resolve(import.meta.dirname, '../../bin/kiln');

/** `kiln serve` as a real process on a random port, no local workers. */
async function serve(dataDir: string, env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  await rm(path.join(dataDir, 'local-url'), { force: true });
  const child = spawn(KILN, ['serve', '--port', '0', '--data-dir', dataDir, '--workers', '0'], { env: { ...process.env, KILN_LOG_LEVEL: 'warn', ...env }, stdio: 'ignore' });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const url = await readFile(path.join(dataDir, 'local-url'), 'utf8').catch(() => '');
    if (url.trim()) return { child, url: url.trim() };
    if (child.exitCode !== null) throw new Error(`kiln serve exited with ${child.exitCode}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error('kiln serve did not start within 60 s');
}

const stopped = (child: ChildProcess) => new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once('exit', resolve)));

const flavours = [
  { name: 'the embedded database', skip: false as const, env: async (): Promise<Record<string, string>> => ({}) },
  {
    name: 'PostgreSQL',
    skip: process.env.KILN_TEST_DATABASE_URL || process.env.CI ? (false as const) : 'KILN_TEST_DATABASE_URL is not set (start the PostgreSQL test server, or run npm test)',
    env: async (): Promise<Record<string, string>> => ({ DATABASE_URL: await freshPostgresUrl() }),
  },
];

for (const flavour of flavours) {
  // Concurrent uploads are written together (group commit, decision 0046):
  // a kill while batches are in flight must lose no acknowledged upload and
  // leave no half of one (a version without its build or job, a row without
  // its source object), nor two builds for one version.
  describe(`the API killed with SIGKILL among concurrent uploads, on ${flavour.name}`, { skip: flavour.skip, timeout: 240_000 }, () => {
    let dataDir: string | undefined;
    let running: ChildProcess | undefined;
    after(async () => {
      running?.kill('SIGKILL');
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    });

    it('keeps every acknowledged upload whole, and nothing half-written', async () => {
      dataDir = await mkdtemp(path.join(os.tmpdir(), 'kiln-upload-crash-'));
      const env = await flavour.env();
      const first = await serve(dataDir, env);
      running = first.child;
      const token = (await readFile(path.join(dataDir, 'local-token'), 'utf8')).trim();
      const app = await call<Json>(first.url, 'POST', '/v1/applications', { token, json: { name: 'crashy-uploads' } });
      assert.equal(app.status, 201);
      const archive = await tinyCProject();
      const acknowledged: { versionId: string; buildId: string }[] = [];
      let sent = 0;
      let killed = false;
      const uploader = async (): Promise<void> => {
        while (!killed) {
          const version = `1.0.${sent++}`;
          try {
            const answer = await call<Json>(first.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token, body: versionForm({ version }, archive) });
            if (answer.status !== 202) assert.fail(`upload ${version}: ${answer.status} ${JSON.stringify(answer.body)}`);
            if (!killed) acknowledged.push({ versionId: String(answer.body.version.id), buildId: String(answer.body.build.id) });
          } catch (error) {
            if (!killed) throw error;
          }
        }
      };
      const uploaders = Array.from({ length: 16 }, uploader);
      while (acknowledged.length < 40) await new Promise((resolve) => setTimeout(resolve, 5));
      // Killed with uploads in every stage: received, being stored, in a batch statement, answered.
      killed = true;
      first.child.kill('SIGKILL');
      await Promise.all(uploaders);
      await stopped(first.child);

      const second = await serve(dataDir, env);
      running = second.child;
      for (const { buildId } of acknowledged) {
        const build = await call<Json>(second.url, 'GET', `/v1/builds/${buildId}`, { token });
        assert.equal(build.status, 200, `acknowledged build ${buildId} survived the crash`);
        assert.equal(build.body.state, 'queued');
      }
      second.child.kill('SIGTERM');
      await stopped(second.child);
      running = undefined;

      const config = loadConfig({ dataDir }, { ...env, KILN_LOG_LEVEL: 'warn' });
      const database = await openDatabase({ url: config.databaseUrl, dataDir: path.join(dataDir, 'db') });
      try {
        const versionRows = await database.db.select().from(versions).where(eq(versions.applicationId, String(app.body.id)));
        const versionIds = new Set(versionRows.map((row) => row.id));
        for (const { versionId } of acknowledged) assert.ok(versionIds.has(versionId), `acknowledged version ${versionId} is stored`);
        const buildRows = await database.db.select().from(builds).where(eq(builds.applicationId, String(app.body.id)));
        const jobRows = buildRows.length === 0 ? [] : await database.db.select().from(jobs).where(inArray(jobs.buildId, buildRows.map((row) => row.id)));
        // Committed but unanswered uploads may be there too (the client saw no answer); each is whole.
        assert.equal(buildRows.length, versionRows.length, 'exactly one build per version');
        assert.deepEqual(new Set(buildRows.map((row) => row.versionId)), versionIds);
        assert.equal(jobRows.length, buildRows.length, 'exactly one job per build');
        assert.deepEqual(new Set(jobRows.map((row) => row.buildId)), new Set(buildRows.map((row) => row.id)));
        const objects = createObjectStore(config.objects);
        for (const row of versionRows) assert.ok(await objects.head(row.sourceKey), `the source of version ${row.version} is stored`);
      } finally {
        await database.close();
      }
    });
  });
}
