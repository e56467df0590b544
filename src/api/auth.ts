import type { FastifyReply, FastifyRequest } from 'fastify';
import { UserError } from '../errors.ts';
import type { TokenRecord, TokenRepository } from '../store/metadata/repositories/tokens.ts';
import type { TokenKind } from '../store/metadata/schema.ts';

export interface Principal {
  tokenId: string;
  kind: TokenKind;
  ownerId: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** Which token kind a route accepts; routes without it are public. */
    auth?: TokenKind;
  }
}

/**
 * Looks tokens up by hash with a short cache: the hot read paths (build
 * polling) then cost one query, not two. Revocation through this process
 * clears the cache at once; other API instances notice within the TTL.
 */
export class TokenAuthenticator {
  private readonly cache = new Map<string, { record: TokenRecord; until: number }>();

  constructor(
    private readonly tokens: TokenRepository,
    private readonly ttlMs = 5_000,
  ) {}

  async authenticate(secret: string): Promise<TokenRecord | undefined> {
    const cached = this.cache.get(secret);
    if (cached && cached.until > Date.now()) return cached.record;
    const record = await this.tokens.findActiveBySecret(secret);
    if (record) {
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(secret, { record, until: Date.now() + this.ttlMs });
    } else {
      this.cache.delete(secret);
    }
    return record;
  }

  forget(tokenId: string): void {
    for (const [secret, entry] of this.cache) if (entry.record.id === tokenId) this.cache.delete(secret);
  }
}

const HOW_TO_AUTHENTICATE =
  'send "Authorization: Bearer <token>"; `kiln serve` writes a local token the CLI finds, and operators create owner tokens with POST /v1/owners';

/**
 * Runs as an `onRequest` hook: after routing (the route's `auth` is known)
 * but before the body is read, parsed or validated, so an unauthenticated
 * caller gets its 401 without the server buffering a byte of its body, and a
 * malformed path (an invalid uuid) is not validated for someone we do not know.
 */
export function authHook(authenticator: TokenAuthenticator) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const required = request.routeOptions.config.auth;
    if (!required) return;
    try {
      request.principal = await principalFor(authenticator, request.headers.authorization, required);
    } catch (error) {
      refuseUnreadBody(request, reply);
      throw error;
    }
  };
}

/** The principal behind an Authorization header, or a 401/403 UserError. */
export async function principalFor(authenticator: TokenAuthenticator, header: string | undefined, required: TokenKind): Promise<Principal> {
  const match = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  if (!match?.[1]) throw new UserError('unauthenticated', 'unauthorized', `missing or malformed credentials: ${HOW_TO_AUTHENTICATE}`);
  const record = await authenticator.authenticate(match[1]);
  if (!record) throw new UserError('unauthenticated', 'unauthorized', `this token is unknown or revoked: ${HOW_TO_AUTHENTICATE}`);
  if (record.kind !== required) {
    throw new UserError('forbidden', 'forbidden', `this route needs a${required === 'admin' ? 'n' : ''} ${required} token; yours is a${record.kind === 'admin' ? 'n' : ''} ${record.kind} token`);
  }
  return { tokenId: record.id, kind: record.kind, ownerId: record.ownerId };
}

/**
 * A refused request may still be sending its body. Keeping the connection
 * alive would make Node read (and discard) all of it to find the next
 * request; closing it after the answer means the rest is never read.
 */
export function refuseUnreadBody(request: FastifyRequest, reply: FastifyReply): void {
  const headers = request.headers;
  const hasBody = headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
  if (hasBody && !request.raw.complete) void reply.header('connection', 'close');
}

/** The owner of the authenticated owner token (routes with auth: 'owner'). */
export function ownerOf(request: FastifyRequest): string {
  const ownerId = request.principal?.ownerId;
  if (!ownerId) throw new UserError('unauthenticated', 'unauthorized', 'an owner token is required');
  return ownerId;
}
