import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { artifactKey, attemptsPrefix, buildIdInKey, buildLogKey, OWNERS_PREFIX, sourceKey, versionPrefix } from '../../src/store/objects/keys.ts';

const owner = '0b4c5d1e-1111-4222-8333-444455556666';
const version = { ownerId: owner, id: '1f2e3d4c-aaaa-4bbb-8ccc-ddddeeeeffff' };
const build = { ownerId: owner, versionId: version.id, id: '9a8b7c6d-1234-4567-89ab-cdef01234567' };

describe('object-store keys', () => {
  it('spells the layout other deployments already have in their buckets', () => {
    assert.equal(versionPrefix(version), `owners/${owner}/versions/${version.id}/`);
    assert.equal(sourceKey(version, 'tar.gz'), `owners/${owner}/versions/${version.id}/source.tar.gz`);
    assert.equal(sourceKey(version, 'zip'), `owners/${owner}/versions/${version.id}/source.zip`);
    assert.equal(buildLogKey(build), `owners/${owner}/versions/${version.id}/builds/${build.id}/build.log`);
    assert.equal(artifactKey(build, 2, 'optimized'), `owners/${owner}/versions/${version.id}/builds/${build.id}/attempt-2/optimized.wasm`);
  });

  it("keeps everything a version owns under its prefix, so one prefix delete removes it all", () => {
    for (const key of [sourceKey(version, 'zip'), buildLogKey(build), artifactKey(build, 1, 'original'), attemptsPrefix(build)]) {
      assert.ok(key.startsWith(versionPrefix(version)), key);
      assert.ok(key.startsWith(OWNERS_PREFIX), key);
    }
    const other = { ...version, id: `${version.id.slice(0, -1)}0` };
    assert.ok(!sourceKey(other, 'zip').startsWith(versionPrefix(version)), 'a sibling version is outside the prefix');
  });

  it('gives every attempt its own folder under the attempts prefix', () => {
    assert.ok(artifactKey(build, 1, 'original').startsWith(attemptsPrefix(build)));
    assert.notEqual(artifactKey(build, 1, 'original'), artifactKey(build, 2, 'original'));
    assert.ok(!artifactKey(build, 12, 'original').startsWith(`${attemptsPrefix(build)}1/`), 'attempt 12 is not inside attempt 1');
  });

  it('finds the build a key belongs to, and none for a source', () => {
    assert.equal(buildIdInKey(artifactKey(build, 3, 'original')), build.id);
    assert.equal(buildIdInKey(buildLogKey(build)), build.id);
    assert.equal(buildIdInKey(sourceKey(version, 'tar.gz')), undefined);
    assert.equal(buildIdInKey('elsewhere/builds/x/y'), undefined);
  });
});
