import { useState } from 'preact/hooks';
import { rollbackTarget } from '../../../src/cli/rollback-target.ts';
import { errorText, type Api, type Deployment } from '../api.ts';
import { formatTime } from '../format.ts';
import type { PageContext } from '../main.tsx';
import type { AppData } from './app.tsx';

/** Shown even before anything was deployed to them; operators may add more (they appear once used). */
const DEFAULT_ENVIRONMENTS = ['staging', 'production'];

interface Props {
  api: Api;
  confirm: PageContext['confirm'];
  data: AppData;
  onChanged: () => void;
}

export function Deployments({ api, confirm, data, onChanged }: Props) {
  const { app, rows, history } = data;
  const promotable = rows.filter((row) => row.succeeded);
  const environments = [...new Set([...DEFAULT_ENVIRONMENTS, ...Object.keys(history.active), ...history.items.map((item) => item.environment)])];
  const [versionId, setVersionId] = useState('');
  const [environment, setEnvironment] = useState(environments[0] ?? 'staging');
  const [message, setMessage] = useState<{ error: boolean; text: string }>();
  const chosenVersionId = versionId || promotable[0]?.version.id || '';

  const promote = (targetVersionId: string, targetEnvironment: string, pinned?: Deployment) => {
    const label = pinned?.version ?? rows.find((row) => row.version.id === targetVersionId)?.version.version ?? targetVersionId;
    const current = history.active[targetEnvironment];
    const verb = pinned ? 'Roll back' : 'Promote';
    confirm({
      title: `${verb} ${app.name} in ${targetEnvironment}?`,
      body: (
        <p>
          {targetEnvironment} will run {label}
          {current ? ` instead of ${current.version}` : ''}. Edge servers pick it up on their next sync.
        </p>
      ),
      confirmLabel: verb,
      onConfirm: () => {
        const body = pinned?.versionId
          ? { versionId: pinned.versionId, environment: targetEnvironment, buildId: pinned.buildId, variant: pinned.variant }
          : { versionId: targetVersionId, environment: targetEnvironment };
        api.promote(app.id, body).then(
          (result) => {
            setMessage({ error: false, text: result.changed ? `${targetEnvironment} now runs ${result.deployment.version}.` : `${targetEnvironment} already ran exactly this; nothing changed.` });
            onChanged();
          },
          (error: unknown) => setMessage({ error: true, text: errorText(error) }),
        );
      },
    });
  };

  return (
    <section aria-labelledby="deployments-title">
      <h2 id="deployments-title">Deployments</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">Environment</th>
            <th scope="col">Active version</th>
            <th scope="col">Since</th>
            <th scope="col">
              <span class="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {environments.map((name) => {
            const active = history.active[name];
            const target = rollbackTarget(
              history.items.filter((item) => item.environment === name),
              active,
            );
            return (
              <tr key={name}>
                <th scope="row">{name}</th>
                <td data-testid={`active-${name}`}>{active ? active.version : 'nothing'}</td>
                <td>{active ? formatTime(active.createdAt) : '–'}</td>
                <td>
                  {target && (
                    <button type="button" onClick={() => promote(target.versionId ?? '', name, target)} aria-label={`Roll back ${name} to ${target.version}`}>
                      Roll back to {target.version}
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {promotable.length > 0 ? (
        <form
          class="inline"
          onSubmit={(event) => {
            event.preventDefault();
            promote(chosenVersionId, environment);
          }}
        >
          <label for="promote-version">Version to promote</label>
          <select id="promote-version" value={chosenVersionId} onChange={(event) => setVersionId(event.currentTarget.value)}>
            {promotable.map((row) => (
              <option key={row.version.id} value={row.version.id}>
                {row.version.version}
              </option>
            ))}
          </select>
          <label for="promote-environment">Environment</label>
          <select id="promote-environment" value={environment} onChange={(event) => setEnvironment(event.currentTarget.value)}>
            {environments.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
          <button type="submit" class="primary">
            Promote
          </button>
        </form>
      ) : (
        <p>No version has a succeeded build yet; only those can be promoted.</p>
      )}
      {message && (
        <p class={message.error ? 'error' : 'ok'} role={message.error ? 'alert' : 'status'}>
          {message.text}
        </p>
      )}
      {history.items.length > 0 && (
        <details>
          <summary>History ({history.items.length})</summary>
          <ol class="history">
            {history.items.map((item) => (
              <li key={item.id}>
                #{item.number} {item.environment}: {item.version} ({item.variant}) — {formatTime(item.createdAt)}
                {item.active ? ' · active' : ''}
              </li>
            ))}
          </ol>
        </details>
      )}
    </section>
  );
}
