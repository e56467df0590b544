import { useState } from 'preact/hooks';
import { errorText, type Api, type Application, type Build, type Deployment, type Version } from '../api.ts';
import { useLoad } from '../load.ts';
import type { PageContext } from '../main.tsx';
import { href } from '../route.ts';
import { StateBadge } from './parts.tsx';

interface AppRow {
  app: Application;
  latest?: Version;
  build?: Build;
  active: Record<string, Deployment>;
}

async function loadRows(api: Api): Promise<AppRow[]> {
  const apps = await api.listApplications();
  return Promise.all(
    apps.items.map(async (app) => {
      const [versions, deployments] = await Promise.all([api.listVersions(app.id, 1), api.deployments(app.id)]);
      const latest = versions.items[0];
      const build = latest ? (await api.listBuilds({ versionId: latest.id }, 1)).items[0] : undefined;
      return { app, latest, build, active: deployments.active };
    }),
  );
}

export function AppsPage({ api, confirm }: PageContext) {
  const rows = useLoad(() => loadRows(api), 'apps');
  const [name, setName] = useState('');
  const [message, setMessage] = useState<{ error: boolean; text: string }>();

  const create = async (event: Event) => {
    event.preventDefault();
    try {
      const created = await api.createApplication(name.trim());
      setName('');
      setMessage({ error: false, text: `Created ${created.name}.` });
      rows.reload();
    } catch (error) {
      setMessage({ error: true, text: errorText(error) });
    }
  };

  const remove = (row: AppRow) => {
    const deployed = Object.keys(row.active);
    confirm({
      title: `Delete ${row.app.name}?`,
      body: (
        <p>
          This deletes the application with all its versions, builds and logs. It cannot be undone.
          {deployed.length > 0 && ` It is active in ${deployed.join(', ')}: edge servers stop serving it.`}
        </p>
      ),
      confirmLabel: 'Delete',
      danger: true,
      onConfirm: () => {
        api.deleteApplication(row.app.id, deployed.length > 0).then(
          () => {
            setMessage({ error: false, text: `Deleted ${row.app.name}.` });
            rows.reload();
          },
          (error: unknown) => setMessage({ error: true, text: errorText(error) }),
        );
      },
    });
  };

  return (
    <section aria-labelledby="apps-title">
      <h1 id="apps-title">Applications</h1>
      <form class="inline" onSubmit={create}>
        <label for="new-app">New application name</label>
        <input id="new-app" value={name} required pattern="[a-z0-9][a-z0-9\-]*" maxLength={100} onInput={(event) => setName(event.currentTarget.value)} />
        <button type="submit" class="primary">
          Create
        </button>
      </form>
      {message && (
        <p class={message.error ? 'error' : 'ok'} role={message.error ? 'alert' : 'status'}>
          {message.text}
        </p>
      )}
      {rows.error && (
        <p class="error" role="alert">
          {rows.error}
        </p>
      )}
      {rows.data && rows.data.length === 0 && <p>No applications yet: create one above, or run <code>kiln deploy</code>.</p>}
      {rows.data && rows.data.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Latest version</th>
              <th scope="col">Build</th>
              <th scope="col">Active deployments</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.data.map((row) => (
              <tr key={row.app.id}>
                <th scope="row">
                  <a href={href.app(row.app.id)}>{row.app.name}</a>
                </th>
                <td>{row.latest?.version ?? '–'}</td>
                <td>{row.build ? <a href={href.build(row.build.id)}><StateBadge state={row.build.state} /></a> : '–'}</td>
                <td>
                  {Object.keys(row.active).length === 0
                    ? 'none'
                    : Object.entries(row.active).map(([environment, deployment]) => (
                        <span class="chip" key={environment}>
                          {environment}: {deployment.version}
                        </span>
                      ))}
                </td>
                <td>
                  <button type="button" class="danger" aria-label={`Delete ${row.app.name}`} onClick={() => remove(row)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
