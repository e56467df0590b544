import { createHash } from 'node:crypto';

/**
 * The dependency cache's per-owner namespace, computed by the API and sent
 * in each job (docs/dependency-cache.md): stable per owner, different between
 * owners, and revealing nothing a worker could use against the API — a
 * one-way, domain-separated hash of the owner id, never a token.
 */
export function cacheNamespace(ownerId: string): string {
  return createHash('sha256').update(`kiln dependency cache namespace\0${ownerId}`).digest('hex').slice(0, 32);
}
