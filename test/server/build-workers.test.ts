/**
 * A build worker process refuses to start on a work root that the
 * sandbox's uids cannot reach, instead of failing every build after it
 * claimed it (bwrap would fail the bind under a closed directory).
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { PlatformError } from '../../src/errors.ts';
import { firstClosedDirectory } from '../../src/sandbox/reach.ts';
import { startBuildWorkers } from '../../src/server/build-workers.ts';

describe('the work root of build workers', () => {
  let root: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'kiln-work-root-'));
    await chmod(root, 0o755);
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('finds the first directory on the way that shuts other users out, the directory itself included', async () => {
    const closed = join(root, 'closed');
    await mkdir(join(closed, 'open', 'deeper'), { recursive: true, mode: 0o755 });
    await chmod(closed, 0o700);
    assert.equal(await firstClosedDirectory(join(closed, 'open', 'deeper')), closed);
    assert.equal(await firstClosedDirectory(closed), closed);
    assert.equal(await firstClosedDirectory(root), undefined);
  });

  it('refuses to start under a closed directory, naming it, before any job is claimed', async () => {
    const closed = join(root, 'private');
    await mkdir(closed, { mode: 0o700 });
    await chmod(closed, 0o700);
    const settings = loadConfig({ sandbox: 'bubblewrap' }, {});
    await assert.rejects(
      // No API behind this URL: a worker that started would only fail to claim.
      startBuildWorkers(settings, { apiUrl: 'http://127.0.0.1:9', token: 'unused', concurrency: 1, workRoot: join(closed, 'jobs'), logger: pino({ level: 'silent' }) }),
      (error: unknown) => error instanceof PlatformError && error.code === 'work_root_unreachable' && error.message.includes(`${closed} lets no other user search it`),
    );
  });
});
