import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { versionForm } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { manyEntriesTarGz, tarGz, zeroFilesTarGz } from '../archive/fixtures-tar.ts';
import { buildZip, deflatedZeros } from '../archive/fixtures-zip.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const GIB = 1024 ** 3;

/**
 * The archive attack set, sent through the real HTTP upload: every one must
 * be refused with a 4xx naming the entry, and leave no version and no object.
 */
describe('hostile uploads over HTTP', () => {
  let t: TestKiln;
  let appId: string;

  before(async () => {
    t = await startTestKiln({ config: {} });
    const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'target' } });
    appId = app.body.id;
  });
  after(() => t.close());

  const upload = (archive: Buffer, filename: string) =>
    call<Json>(t.url, 'POST', `/v1/applications/${appId}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0' }, archive, filename) });

  const attacks: Array<{ name: string; make: () => Promise<Buffer> | Buffer; file: string; status: number; mentions: RegExp }> = [
    { name: '1 GiB tar.gz bomb (~1 MB)', make: () => zeroFilesTarGz(['bomb.bin'], GIB), file: 'a.tar.gz', status: 413, mentions: /bomb\.bin/ },
    { name: '1 GiB zip bomb (~1 MB)', make: () => buildZip([{ name: 'bomb.bin', precompressed: deflatedZeros(GIB) }]), file: 'a.zip', status: 413, mentions: /bomb\.bin/ },
    {
      name: 'zip that lies about its sizes',
      make: () => buildZip([{ name: 'liar.bin', precompressed: deflatedZeros(GIB), centralUncompressedSize: 1024, localUncompressedSize: 1024 }]),
      file: 'a.zip',
      status: 422,
      mentions: /liar\.bin/,
    },
    { name: 'path traversal', make: () => tarGz([{ name: '../../etc/cron.d/evil', content: 'x' }]), file: 'a.tar.gz', status: 422, mentions: /evil/ },
    { name: 'absolute path', make: () => tarGz([{ name: '/etc/passwd', content: 'x' }]), file: 'a.tar.gz', status: 422, mentions: /\/etc\/passwd/ },
    { name: 'symlink', make: () => tarGz([{ name: 'link', type: 'symlink', linkname: '/etc/shadow' }]), file: 'a.tar.gz', status: 422, mentions: /link/ },
    {
      name: 'hard link',
      make: () => tarGz([{ name: 'a.txt', content: 'x' }, { name: 'hard', type: 'link', linkname: '/etc/shadow' }]),
      file: 'a.tar.gz',
      status: 422,
      mentions: /hard/,
    },
    { name: 'device entry', make: () => tarGz([{ name: 'dev', type: 'character-device', devmajor: 1, devminor: 3 }]), file: 'a.tar.gz', status: 422, mentions: /dev/ },
    { name: '100,000 entries', make: () => manyEntriesTarGz(100_000), file: 'a.tar.gz', status: 413, mentions: /entries/ },
    { name: 'not an archive at all', make: () => randomBytes(4096), file: 'a.tar.gz', status: 415, mentions: /archive|format|gzip|zip/i },
  ];

  for (const attack of attacks) {
    it(`refuses ${attack.name}`, async () => {
      const answer = await upload(await attack.make(), attack.file);
      assert.equal(answer.status, attack.status, JSON.stringify(answer.body));
      assert.match(answer.body.error.code, /^archive_/);
      assert.match(answer.body.error.message, attack.mentions);
    });
  }

  it('refuses an upload over the size limit with 413', async () => {
    const limited = await startTestKiln({ env: { KILN_UPLOAD_MAX_BYTES: String(64 * 1024) } });
    try {
      const created = await call<Json>(limited.url, 'POST', '/v1/applications', { token: limited.ownerToken, json: { name: 'small' } });
      const answer = await call<Json>(limited.url, 'POST', `/v1/applications/${created.body.id}/versions`, {
        token: limited.ownerToken,
        body: versionForm({ version: '1.0.0' }, randomBytes(256 * 1024), 'big.tar.gz'),
      });
      assert.equal(answer.status, 413, JSON.stringify(answer.body));
      assert.equal(typeof answer.body.error.message, 'string');
    } finally {
      await limited.close();
    }
  });

  it('refuses what the operator set lower (entries, one file, depth), each with its limit named, and takes the rest', async () => {
    const limited = await startTestKiln({ env: { KILN_UPLOAD_MAX_ENTRIES: '8', KILN_UPLOAD_MAX_FILE_BYTES: '1024', KILN_UPLOAD_MAX_DEPTH: '3' } });
    try {
      const created = await call<Json>(limited.url, 'POST', '/v1/applications', { token: limited.ownerToken, json: { name: 'strict' } });
      const send = async (archive: Buffer, version: string) =>
        call<Json>(limited.url, 'POST', `/v1/applications/${created.body.id}/versions`, { token: limited.ownerToken, body: versionForm({ version }, archive, 'a.tar.gz') });
      const refusals: Array<[Buffer, number, RegExp]> = [
        [manyEntriesTarGz(20), 413, /entries/],
        [await tarGz([{ name: 'big.bin', content: 'x'.repeat(4096) }]), 413, /big\.bin/],
        [await tarGz([{ name: 'a/b/c/d/deep.txt', content: 'x' }]), 422, /deep\.txt/],
      ];
      let n = 0;
      for (const [archive, status, mentions] of refusals) {
        const answer = await send(archive, `1.0.${n++}`);
        assert.equal(answer.status, status, JSON.stringify(answer.body));
        assert.match(answer.body.error.message, mentions);
      }
      const fine = await send(await tarGz([{ name: 'src/main.c', content: 'int main(void) { return 0; }\n' }]), '2.0.0');
      assert.equal(fine.status, 202, JSON.stringify(fine.body));
      // The worker extracts under the same limits: they travel with the job.
      const claim = await call<Json>(limited.url, 'POST', '/internal/v1/jobs/claim', { token: limited.workerToken, json: { workerId: 'limits-test', waitMs: 1000 } });
      const limits = claim.body.job.archiveLimits;
      assert.deepEqual({ entries: limits.maxEntries, file: limits.maxFileBytes, depth: limits.maxDepth }, { entries: 8, file: 1024, depth: 3 });
    } finally {
      await limited.close();
    }
  });

  it('kept no version and no object from any refused upload', async () => {
    const versions = await call<Json>(t.url, 'GET', `/v1/applications/${appId}/versions`, { token: t.ownerToken });
    assert.equal(versions.body.items.length, 0);
    const stored: string[] = [];
    for await (const object of t.kiln.services.objects.list('owners/')) stored.push(object.key);
    assert.deepEqual(stored, []);
    const health = await call(t.url, 'GET', '/healthz');
    assert.equal(health.status, 200, 'the server is still answering');
  });
});
