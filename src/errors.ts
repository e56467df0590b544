/**
 * Two families of errors, because Kiln must never blame a user for its own
 * fault nor hide a user's mistake behind a 500:
 *  - UserError: the caller did something wrong; carries an HTTP status (4xx)
 *    and a stable machine-readable code.
 *  - PlatformError: Kiln (or its infrastructure) failed; reported as 5xx and
 *    for builds as `crashed`.
 */
export class UserError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export class PlatformError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PlatformError';
  }
}

export const badRequest = (code: string, message: string): UserError => new UserError(400, code, message);
export const notFound = (what: string, id: string): UserError => new UserError(404, 'not_found', `${what} ${id} does not exist`);
export const conflict = (code: string, message: string): UserError => new UserError(409, code, message);
export const tooLarge = (code: string, message: string): UserError => new UserError(413, code, message);
export const unprocessable = (code: string, message: string): UserError => new UserError(422, code, message);

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
