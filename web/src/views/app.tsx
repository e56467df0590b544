import { useState } from 'preact/hooks';
import { errorText, type Api, type Application, type Build, type DeploymentHistory, type Version } from '../api.ts';
import { compilerOf, formatBytes, formatMs, formatTime, variantFacts } from '../format.ts';
import { useLoad } from '../load.ts';
import type { PageContext } from '../main.tsx';
import { href, navigate } from '../route.ts';
import { Deployments } from './deployments.tsx';
import { StateBadge, Problem } from './parts.tsx';
import { Upload } from './upload.tsx';
import { VersionChart } from './chart.tsx';

export interface VersionRow {
  version: Version;
  /** The version's newest build. */
  build?: Build;
  /** Its newest succeeded build (what runs, what is promoted). */
  succeeded?: Build;
}

export interface AppData {
  app: Application;
  rows: VersionRow[];
  history: DeploymentHistory;
}

async function loadApp(api: Api, applicationId: string): Promise<AppData> {
  const [app, versions, builds, history] = await Promise.all([
    api.getApplication(applicationId),
    api.listVersions(applicationId),
    api.listBuilds({ applicationId }),
    api.deployments(applicationId),
  ]);
  // Builds come newest first: the first seen per version is its latest.
  const rows = versions.items.map((version) => {
    const own = builds.items.filter((build) => build.versionId === version.id);
    return { version, build: own[0], succeeded: own.find((build) => build.state === 'succeeded') };
  });
  return { app, rows, history };
}

export function AppPage(context: PageContext & { applicationId: string }) {
  const { api, confirm, applicationId } = context;
  const loaded = useLoad(() => loadApp(api, applicationId), applicationId);
  const [message, setMessage] = useState<string>();
  const data = loaded.data;

  const rebuild = async (version: Version) => {
    try {
      const build = await api.rebuild(version.id);
      navigate(href.build(build.id));
    } catch (error) {
      setMessage(errorText(error));
    }
  };

  if (!data) return loaded.error ? <Problem text={loaded.error} /> : <p>Loading…</p>;
  const latest = data.rows[0]?.version.version;
  return (
    <>
      <h1>{data.app.name}</h1>
      {data.app.notes && <p>{data.app.notes}</p>}
      <Problem text={message ?? loaded.error} />
      <section aria-labelledby="versions-title">
        <h2 id="versions-title">Versions and builds</h2>
        {data.rows.some((row) => row.succeeded) && (
          <p>
            <a class="button" href={href.tryLatest(data.app.id)}>
              Try the latest succeeded version
            </a>
          </p>
        )}
        {data.rows.length === 0 ? <p>No versions yet: upload one below.</p> : <VersionTable rows={data.rows} onRebuild={rebuild} />}
        {data.rows.length > 0 && <VersionChart rows={data.rows} />}
      </section>
      <Upload api={api} application={data.app} latestVersion={latest} />
      <Deployments api={api} confirm={confirm} data={data} onChanged={loaded.reload} />
    </>
  );
}

function VersionTable({ rows, onRebuild }: { rows: VersionRow[]; onRebuild: (version: Version) => void }) {
  return (
    <div class="scroll">
      <table>
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Build</th>
            <th scope="col">Language</th>
            <th scope="col">Compiler</th>
            <th scope="col">Duration</th>
            <th scope="col">Size (original → optimized)</th>
            <th scope="col">Start-up (original → optimized)</th>
            <th scope="col">
              <span class="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map(({ version, build, succeeded }) => {
            const original = build ? variantFacts(build, 'original') : {};
            const optimized = build ? variantFacts(build, 'optimized') : {};
            return (
              <tr key={version.id}>
                <th scope="row" title={`uploaded ${formatTime(version.createdAt)}`}>
                  {version.version}
                </th>
                <td>
                  {build ? (
                    <a href={href.build(build.id)} aria-label={`build ${build.number} of ${version.version}: ${build.state}`}>
                      #{build.number} <StateBadge state={build.state} />
                    </a>
                  ) : (
                    '–'
                  )}
                </td>
                <td>{build?.language ?? version.language ?? '–'}</td>
                <td>{(build && compilerOf(build)) ?? '–'}</td>
                <td>{formatMs(build?.durationMs)}</td>
                <td>
                  {formatBytes(original.bytes)} → {formatBytes(optimized.bytes)}
                </td>
                <td>
                  {formatMs(original.startupMs)} → {formatMs(optimized.startupMs)}
                </td>
                <td class="actions">
                  {succeeded && (
                    <a class="button" href={href.tryVersion(version.id)} aria-label={`Try ${version.version}`}>
                      Try it
                    </a>
                  )}
                  {build && build.state !== 'queued' && build.state !== 'running' && (
                    <button type="button" onClick={() => onRebuild(version)} aria-label={`Rebuild ${version.version}`}>
                      Rebuild
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
