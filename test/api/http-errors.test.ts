import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeError, httpStatusOf } from '../../src/api/http-errors.ts';
import { badRequest, conflict, notFound, PLATFORM_ERROR_KINDS, PlatformError, tooLarge, unprocessable, USER_ERROR_KINDS, UserError, type PlatformErrorKind, type UserErrorKind } from '../../src/errors.ts';

// The statuses clients have always seen, written out here rather than read
// from the module under test, so a changed mapping fails this file.
const EXPECTED_USER_STATUS: Record<UserErrorKind, number> = {
  invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  unsupported_format: 415,
  unprocessable: 422,
  rate_limited: 429,
  unavailable: 503,
};
const EXPECTED_PLATFORM_STATUS: Record<PlatformErrorKind, number> = { unavailable: 503, internal: 500 };

describe('error kinds → HTTP', () => {
  it('answers every user error kind with its status, its code and its own message', () => {
    assert.deepEqual([...USER_ERROR_KINDS].sort(), Object.keys(EXPECTED_USER_STATUS).sort(), 'a new kind needs its status here');
    for (const kind of USER_ERROR_KINDS) {
      const described = describeError(new UserError(kind, `code_${kind}`, `message for ${kind}`));
      assert.deepEqual(described, { status: EXPECTED_USER_STATUS[kind], code: `code_${kind}`, message: `message for ${kind}` }, kind);
    }
  });

  it('keeps the statuses of the helper functions the tree calls', () => {
    assert.equal(httpStatusOf(badRequest('x', 'm')), 400);
    assert.equal(httpStatusOf(notFound('application', 'a1')), 404);
    assert.equal(describeError(notFound('application', 'a1')).code, 'not_found');
    assert.equal(httpStatusOf(conflict('x', 'm')), 409);
    assert.equal(httpStatusOf(tooLarge('x', 'm')), 413);
    assert.equal(httpStatusOf(unprocessable('x', 'm')), 422);
  });

  it('answers every platform error kind with its status and code but never its message', () => {
    assert.deepEqual([...PLATFORM_ERROR_KINDS].sort(), Object.keys(EXPECTED_PLATFORM_STATUS).sort());
    for (const kind of PLATFORM_ERROR_KINDS) {
      const described = describeError(new PlatformError('object_store_failed', 'S3 PUT at 10.0.0.7:7480 failed: secret detail', { kind }));
      assert.equal(described.status, EXPECTED_PLATFORM_STATUS[kind], kind);
      assert.equal(described.code, 'object_store_failed');
      assert.doesNotMatch(described.message, /10\.0\.0\.7|secret detail/);
    }
    assert.equal(httpStatusOf(new PlatformError('sandbox_failed', 'm')), 503, 'a platform error is a failed dependency unless it says otherwise');
  });

  it('answers an unknown thrown error with 500 and a platform code, without leaking its message', () => {
    for (const thrown of [new Error('connect ECONNREFUSED /var/run/secret.sock'), new TypeError('cannot read properties of undefined'), 'a string', undefined, null, 42]) {
      const described = describeError(thrown);
      assert.equal(described.status, 500, String(thrown));
      assert.equal(described.code, 'internal_error');
      assert.doesNotMatch(described.message, /ECONNREFUSED|secret|properties|a string/);
    }
  });

  it("answers the framework's own refusals with their 4xx", () => {
    const validation = Object.assign(new Error('body/name must be string'), { validation: [{}], validationContext: 'body', statusCode: 400 });
    assert.deepEqual(describeError(validation), { status: 400, code: 'invalid_request', message: 'body/name must be string' });
    const tooBig = Object.assign(new Error('Request body is too large'), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' });
    assert.deepEqual(describeError(tooBig), { status: 413, code: 'payload_too_large', message: 'Request body is too large' });
    const badJson = Object.assign(new Error("Body is not valid JSON but content-type is set to 'application/json'"), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' });
    assert.equal(describeError(badJson).code, 'invalid_json');
  });
});
