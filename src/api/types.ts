/**
 * The API's JSON shapes as TypeScript types, derived from the TypeBox schemas
 * that validate and document them. Both clients import these: the CLI
 * (src/cli/api-client.ts) and the web UI (web/src), so neither can drift from
 * the API without the type check noticing. Type-only: importing this module
 * loads nothing of the server at run time (nor into the UI bundle).
 */
import type { Static } from '@sinclair/typebox';
import type { BuildOutcome } from '../worker/protocol.ts';
import type {
  Application as ApplicationSchema,
  Build as BuildSchema,
  BuildStateSchema,
  Kind as KindSchema,
  Language as LanguageSchema,
  Version as VersionSchema,
  VersionMetadata as VersionMetadataSchema,
} from './schemas.ts';
import type { DeploymentHistoryJson, DeploymentJson, PromoteResultJson } from './deployment-json.ts';
import type { ComponentResultSchema, FilterResultSchema, FunctionResultSchema, InvokeBody as InvokeBodySchema } from '../testbed/api-schemas.ts';

export type Application = Static<typeof ApplicationSchema>;
export type Version = Static<typeof VersionSchema>;
export type Build = Static<typeof BuildSchema>;
export type BuildState = Static<typeof BuildStateSchema>;
export type VersionMetadata = Static<typeof VersionMetadataSchema>;
export type LanguageName = Static<typeof LanguageSchema>;
export type KindName = Static<typeof KindSchema>;
export type InvokeBody = Static<typeof InvokeBodySchema>;
export type FunctionResult = Static<typeof FunctionResultSchema>;
export type FilterResult = Static<typeof FilterResultSchema>;
export type ComponentResult = Static<typeof ComponentResultSchema>;
export type InvokeResult = FunctionResult | FilterResult | ComponentResult;
export type Deployment = DeploymentJson;
export type PromoteResult = PromoteResultJson;
export type DeploymentHistory = DeploymentHistoryJson;

/** One page of a list; pass `nextCursor` back as `cursor` for the next. */
export interface Page<T> {
  items: T[];
  nextCursor?: string;
}

/** The error shape of every 4xx and 5xx answer. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/**
 * The outcomes are declared in the worker protocol (BUILD_OUTCOMES), whose
 * TypeBox schema this type-only module must not load into the UI bundle; so
 * the list is spelled here and the type check holds it to the protocol's,
 * both ways (nothing missing, nothing extra).
 */
const OUTCOMES = ['succeeded', 'failed', 'crashed', 'cancelled'] as const satisfies readonly BuildOutcome[];
type MissingOutcome = Exclude<BuildOutcome, (typeof OUTCOMES)[number]>;
const everyOutcomeListed: MissingOutcome extends never ? true : MissingOutcome = true;
void everyOutcomeListed;
export const TERMINAL_STATES: readonly BuildState[] = OUTCOMES;
export const BUILD_STATES: readonly BuildState[] = ['queued', 'running', ...TERMINAL_STATES];
