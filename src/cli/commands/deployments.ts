import type { Command } from 'commander';
import type { DeploymentHistoryJson, DeploymentJson, PromoteResultJson } from '../../api/deployment-json.ts';
import type { ApiClient } from '../api-client.ts';
import { apiCommand, contextFor, parsePositiveInteger, type CommonFlags } from '../context.ts';
import { formatBytes, type Column, type Output } from '../output.ts';

export type Deployment = DeploymentJson;
export type PromoteResult = PromoteResultJson;
export type DeploymentHistory = DeploymentHistoryJson;

export const ENV_HELP = 'environment: staging, production, or one your operator added';

// The deployment calls live here rather than in api-client.ts: they are used
// only by promote, rollback and deployments, which import them from here.

export function promoteVersion(client: ApiClient, applicationId: string, body: { versionId: string; environment: string; buildId?: string; variant?: string }): Promise<PromoteResult> {
  return client.json('POST', `/v1/applications/${encodeURIComponent(applicationId)}/deployments`, { json: body });
}

export function deploymentPage(client: ApiClient, applicationId: string, query: { environment?: string; limit?: number; cursor?: string }): Promise<DeploymentHistory> {
  return client.json('GET', `/v1/applications/${encodeURIComponent(applicationId)}/deployments`, { query });
}

/** The whole history (newest first, bounded) and the active deployment per environment. */
export async function deploymentHistory(client: ApiClient, applicationId: string, environment?: string, max = 10_000): Promise<{ items: Deployment[]; active: Record<string, Deployment> }> {
  const items: Deployment[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await deploymentPage(client, applicationId, { environment, limit: 200, cursor });
    items.push(...page.items);
    cursor = items.length < max ? page.nextCursor : undefined;
    if (!cursor) return { items: items.slice(0, max), active: page.active };
  }
}

export const deploymentColumns = (output: Output): Column<Deployment>[] => [
  { header: '#', value: (deployment) => String(deployment.number) },
  { header: 'ENV', value: (deployment) => deployment.environment },
  { header: 'VERSION', value: (deployment) => deployment.version + (deployment.versionId === null ? ' (deleted)' : '') },
  { header: 'STATE', value: (deployment) => stateOf(output, deployment) },
  { header: 'SIZE', value: (deployment) => formatBytes(deployment.artifact.size) },
  { header: 'SHA256', value: (deployment) => deployment.artifact.sha256.slice(0, 12) },
  { header: 'BUILD', value: (deployment) => deployment.buildId },
  { header: 'PROMOTED', value: (deployment) => output.time(deployment.createdAt) },
];

function stateOf(output: Output, deployment: Deployment): string {
  if (deployment.active) return output.out.green('active');
  if (deployment.withdrawnAt) return output.out.yellow('withdrawn');
  return output.out.dim('replaced');
}

/** "hello 1.2.0 → production" lines after a promotion or rollback. */
export function reportPromotion(output: Output, appName: string, result: PromoteResult, verb: string): void {
  if (output.json) return output.printJson(result);
  const { deployment, previous } = result;
  if (!result.changed) return output.line(`${appName} ${deployment.version} is already active in ${deployment.environment}; nothing changed.`);
  const from = previous ? ` (was ${previous.version})` : '';
  output.line(`${output.out.green('✔')} ${verb} ${output.out.bold(appName)} ${deployment.version} to ${deployment.environment}${from}`);
  output.fields([
    ['deployment', `#${deployment.number} ${deployment.id}`],
    ['artifact', `${deployment.variant}, ${formatBytes(deployment.artifact.size)}, sha256 ${deployment.artifact.sha256}`],
    ['build', deployment.buildId],
  ]);
}

interface DeploymentsFlags extends CommonFlags {
  env?: string;
  limit?: number;
}

export function deploymentsCommand(): Command {
  return apiCommand('deployments', "Show an application's deployment history and what is active in each environment", [
    'kiln deployments hello',
    'kiln deployments hello --env production --limit 5',
    'kiln deployments hello --json | jq .active.production.version',
  ])
    .argument('<app>', 'application name or id')
    .option('-e, --env <environment>', `only this environment (${ENV_HELP})`)
    .option('--limit <n>', 'show at most n', parsePositiveInteger)
    .action(async (ref: string, flags: DeploymentsFlags) => {
      const { client, output } = contextFor(flags);
      const app = await client.resolveApplication(ref);
      const history = await deploymentHistory(client, app.id, flags.env, flags.limit);
      if (output.json) return output.printJson(history);
      const active = Object.values(history.active);
      if (output.stdoutIsTty) {
        if (active.length === 0) output.line(`${app.name} is not active in any environment. Promote a version: kiln promote ${app.name}@<version> --env staging`);
        for (const deployment of active) output.line(`${output.out.bold(deployment.environment)}: ${deployment.version} (deployment #${deployment.number}, ${output.time(deployment.createdAt)})`);
        if (history.items.length > 0) output.line();
      }
      output.table(history.items, deploymentColumns(output));
    });
}
