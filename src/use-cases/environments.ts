import { badRequest } from '../errors.ts';

/** Deployments and manifests name only the environments the operator configured. */
export function requireEnvironment(allowed: readonly string[], environment: string): void {
  if (!allowed.includes(environment)) {
    throw badRequest('unknown_environment', `environment ${JSON.stringify(environment)} is not configured; use one of ${allowed.join(', ')} (operators add more with KILN_ENVIRONMENTS)`);
  }
}
