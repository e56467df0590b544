/**
 * Two families of errors, because Kiln must never blame a user for its own
 * fault nor hide a user's mistake behind a 500:
 *  - UserError: the caller did something wrong; its message is for them.
 *  - PlatformError: Kiln (or its infrastructure) failed; reported as 5xx and
 *    for builds as `crashed`, its message kept for the operator's log.
 *
 * Each carries a stable machine-readable `code` (what API clients branch on)
 * and a `kind` from a small closed set (what went wrong, in general terms).
 * Neither knows about HTTP: the API edge maps kinds to statuses in one place
 * (src/api/http-errors.ts, decision 0023), so the build path, the test bed
 * and the CLI raise the same errors without speaking a transport.
 */

/** The ways a caller can be at fault. */
export const USER_ERROR_KINDS = [
  /** The request is malformed or names something that makes no sense. */
  'invalid',
  /** No, or no valid, credentials. */
  'unauthenticated',
  /** Valid credentials that may not do this. */
  'forbidden',
  /** What the request names does not exist (or is not the caller's to see). */
  'not_found',
  /** The request clashes with the current state (a duplicate, a live deployment, a running build). */
  'conflict',
  /** Too big in some dimension: the same thing, smaller, would be accepted. */
  'too_large',
  /** Not a format Kiln reads at all. */
  'unsupported_format',
  /** Well-formed, but its content is refused (unsafe, invalid WebAssembly, …). */
  'unprocessable',
  /** The caller is over its share of a limited resource; retry later. */
  'rate_limited',
  /**
   * Shared capacity is exhausted (every test bed slot busy): not the caller's
   * doing, but a refusal whose message tells them what to do, so it is
   * raised as a UserError and shown in full, unlike a PlatformError.
   */
  'unavailable',
] as const;
export type UserErrorKind = (typeof USER_ERROR_KINDS)[number];

/** The ways Kiln can fail. */
export const PLATFORM_ERROR_KINDS = [
  /** A service Kiln depends on failed (database, object store, sandbox host); retrying may help. */
  'unavailable',
  /** Kiln itself is broken (a bug, a broken invariant); retrying will not help. */
  'internal',
] as const;
export type PlatformErrorKind = (typeof PLATFORM_ERROR_KINDS)[number];

export class UserError extends Error {
  readonly blame = 'user';

  constructor(
    readonly kind: UserErrorKind,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export class PlatformError extends Error {
  readonly blame = 'platform';
  readonly kind: PlatformErrorKind;

  constructor(
    readonly code: string,
    message: string,
    // Most platform failures are a dependency failing, hence the default.
    options?: { cause?: unknown; kind?: PlatformErrorKind },
  ) {
    super(message, options);
    this.name = 'PlatformError';
    this.kind = options?.kind ?? 'unavailable';
  }
}

export const badRequest = (code: string, message: string): UserError => new UserError('invalid', code, message);
export const notFound = (what: string, id: string): UserError => new UserError('not_found', 'not_found', `${what} ${id} does not exist`);
export const conflict = (code: string, message: string): UserError => new UserError('conflict', code, message);
export const tooLarge = (code: string, message: string): UserError => new UserError('too_large', code, message);
export const unprocessable = (code: string, message: string): UserError => new UserError('unprocessable', code, message);

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
