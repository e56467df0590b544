/**
 * The one place where errors become HTTP (decision 0023): domain errors say
 * whose fault and what kind; this module alone says which status that is and
 * what a client may read. Everything in src/api that answers with an error
 * goes through `describeError`.
 */
import type { FastifyError } from 'fastify';
import { PlatformError, UserError, type PlatformErrorKind, type UserErrorKind } from '../errors.ts';
import { LeaseLostError } from '../queue/jobs.ts';
import { isDatabaseUnavailable } from '../store/metadata/errors.ts';
import { ObjectIntegrityError, ObjectNotFoundError } from '../store/objects/object-store.ts';

export const USER_ERROR_STATUS = {
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
} as const satisfies Record<UserErrorKind, number>;

export const PLATFORM_ERROR_STATUS = {
  unavailable: 503,
  internal: 500,
} as const satisfies Record<PlatformErrorKind, number>;

/**
 * A platform failure's own message names hosts, paths and internals: it goes
 * to the log, and the client reads one of these instead.
 */
const PLATFORM_MESSAGE: Record<PlatformErrorKind, string> = {
  unavailable: 'Kiln could not complete this because a service it depends on failed; try again shortly',
  internal: 'Kiln failed to handle this request; the error was logged',
};

export interface DescribedError {
  status: number;
  code: string;
  message: string;
}

/** The HTTP status an error is answered with. */
export function httpStatusOf(error: unknown): number {
  return describeError(error).status;
}

/** Maps every error to a status the caller can act on; only our faults are 5xx. */
export function describeError(error: unknown): DescribedError {
  if (error instanceof UserError) return { status: USER_ERROR_STATUS[error.kind], code: error.code, message: error.message };
  if (error instanceof LeaseLostError) return { status: 409, code: error.code, message: error.message };
  if (error instanceof ObjectNotFoundError) return { status: 404, code: 'object_missing', message: 'the stored object is missing' };
  if (error instanceof PlatformError) return { status: PLATFORM_ERROR_STATUS[error.kind], code: error.code, message: PLATFORM_MESSAGE[error.kind] };
  if (isDatabaseUnavailable(error)) return { status: 503, code: 'database_unavailable', message: 'the database is unavailable; try again shortly' };
  if (error instanceof ObjectIntegrityError) return { status: 500, code: 'integrity_error', message: 'a stored object failed its integrity check; the operator has been told' };
  return describeFrameworkError(error) ?? { status: 500, code: 'internal_error', message: PLATFORM_MESSAGE.internal };
}

/** Fastify's own refusals (validation, body parsing, limits) are the caller's fault: 4xx with their message. */
function describeFrameworkError(error: unknown): DescribedError | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation) {
    const context = fastifyError.validationContext ?? 'request';
    return { status: 400, code: 'invalid_request', message: `${context}${fastifyError.message?.replace(/^(body|querystring|params|headers)/, '') ?? ' is invalid'}` };
  }
  const statusCode = fastifyError.statusCode;
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return { status: statusCode, code: frameworkCode(fastifyError.code, statusCode), message: fastifyError.message ?? 'bad request' };
  }
  return undefined;
}

function frameworkCode(fastifyCode: string | undefined, status: number): string {
  if (status === 413) return 'payload_too_large';
  if (status === 414) return 'uri_too_long';
  if (status === 415) return 'unsupported_media_type';
  if (fastifyCode === 'FST_ERR_CTP_INVALID_JSON_BODY' || fastifyCode === 'FST_ERR_CTP_EMPTY_JSON_BODY') return 'invalid_json';
  return 'bad_request';
}
