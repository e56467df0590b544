import { unprocessable, type UserError } from '../errors.ts';

/**
 * A build that cannot go on because of the upload itself (no manifest, no
 * output where the convention puts it, ...). The worker reports it as
 * `failed` with this message as the one-line reason, never as `crashed`.
 */
export function buildFailure(message: string): UserError {
  return unprocessable('build_failed', message);
}
