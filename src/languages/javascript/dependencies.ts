/**
 * The one place that decides what an upload's npm dependencies mean. Until
 * the fetch phase (toolchains issue) lands, Kiln cannot install packages
 * offline, so declaring any is a clear build failure rather than an
 * "unresolved import" from the bundler. Switch here when it lands.
 */
import { buildFailure } from '../../build-kit/failure.ts';

const DEPENDENCY_FIELDS = ['dependencies', 'optionalDependencies', 'peerDependencies'] as const;

/** Throws a build failure naming the dependencies when package.json declares any. */
export function refuseDependencies(manifest: Record<string, unknown> | undefined): void {
  if (manifest === undefined) return;
  const names = DEPENDENCY_FIELDS.flatMap((field) => {
    const value = manifest[field];
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? Object.keys(value) : [];
  });
  if (names.length === 0) return;
  const shown = names.slice(0, 5).join(', ') + (names.length > 5 ? ` and ${names.length - 5} more` : '');
  throw buildFailure(
    `package.json declares npm dependencies (${shown}); JavaScript and TypeScript apps cannot use npm packages yet (Kiln has no offline fetch phase for them). Remove them or vendor the code into your sources. devDependencies (types, tools) are ignored.`,
  );
}
