import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

/**
 * An upload waits in memory when it is small (decision 0037) and in a temp
 * file otherwise: both ways end in the same stored source and rows, and
 * leave no temp file behind.
 */
describe('an upload through memory or through a temp file', () => {
  for (const { name, env } of [
    { name: 'in memory (the default for a small upload)', env: {} },
    { name: 'through a temp file (uploads.memoryBytes = 0)', env: { KILN_UPLOAD_MEMORY_BYTES: '0' } },
  ]) {
    it(`stores the same source and answers 202 ${name}`, async () => {
      const t = await startTestKiln({ env });
      try {
        const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'spooled' } });
        const archive = await tinyCProject();
        const answer = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0' }, archive) });
        assert.equal(answer.status, 202, JSON.stringify(answer.body));
        assert.equal(answer.body.version.source.sha256, createHash('sha256').update(archive).digest('hex'));
        assert.equal(answer.body.build.state, 'queued');
        const source = await call(t.url, 'GET', `/v1/versions/${answer.body.version.id}/source`, { token: t.ownerToken });
        assert.deepEqual(source.raw, archive);
        assert.deepEqual(await readdir(path.join(t.dataDir, 'tmp')).catch(() => []), [], 'no temp file is left');
        assert.equal(t.kiln.services.uploadMemory.usedBytes, 0, 'the memory lent to the upload is given back');
      } finally {
        await t.close();
      }
    });
  }
});
