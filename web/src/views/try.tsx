import { useState } from 'preact/hooks';
import { errorText, type Api, type ComponentResultView, type FilterResultView, type InvokeBody, type InvokeResult, type Version } from '../api.ts';
import { formatBytes, formatMs } from '../format.ts';
import { useLoad } from '../load.ts';
import type { PageContext } from '../main.tsx';
import { href } from '../route.ts';
import { lines, parseEnvLines, parseHeaderLines } from '../forms.ts';
import { Problem } from './parts.tsx';

/** The version's kind, or, when the upload left it to detection, what its latest succeeded build found. */
async function loadTarget(api: Api, versionId: string): Promise<{ version: Version; kind: string | null }> {
  const [version, builds] = await Promise.all([api.getVersion(versionId), api.listBuilds({ versionId, state: 'succeeded' }, 1)]);
  return { version, kind: version.kind ?? builds.items[0]?.kind ?? null };
}

export function TryLatestPage({ api, confirm, applicationId }: PageContext & { applicationId: string }) {
  const latest = useLoad(async () => ({ app: await api.getApplication(applicationId), version: await api.latestSucceededVersion(applicationId) }), applicationId);
  if (!latest.data) return latest.error ? <Problem text={latest.error} /> : <p>Loading…</p>;
  const { app, version } = latest.data;
  if (!version) return <Problem text={`${app.name} has no version with a succeeded build yet.`} />;
  return (
    <>
      <p role="status">
        No version chosen: using {app.name}@{version.version}, the newest version with a succeeded build.
      </p>
      <TryPage api={api} confirm={confirm} versionId={version.id} />
    </>
  );
}

export function TryPage({ api, versionId }: PageContext & { versionId: string }) {
  const target = useLoad(() => loadTarget(api, versionId), versionId);
  const [result, setResult] = useState<InvokeResult>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  if (!target.data) return target.error ? <Problem text={target.error} /> : <p>Loading…</p>;
  const { version, kind } = target.data;

  const invoke = async (body: InvokeBody) => {
    setBusy(true);
    setError(undefined);
    setResult(undefined);
    try {
      setResult(await api.invoke(version.id, body));
    } catch (failure) {
      setError(errorText(failure));
    } finally {
      setBusy(false);
    }
  };

  const previewUrl = `${window.location.origin}/preview/${version.id}/`;
  return (
    <>
      <p>
        <a href={href.app(version.applicationId)}>← Application</a>
      </p>
      <h1>Try {version.version}</h1>
      {kind === 'proxy-wasm' || kind === 'http-component' ? <FilterForm busy={busy} onInvoke={invoke} /> : <FunctionForm busy={busy} onInvoke={invoke} />}
      {(kind === 'proxy-wasm' || kind === 'http-component') && (
        <p>
          Preview URL (real HTTP through the filter; send your token as <code>Authorization: Bearer</code>):{' '}
          <a href={previewUrl} rel="noreferrer">
            {previewUrl}
          </a>
        </p>
      )}
      <Problem text={error} />
      {result && <ResultView result={result} />}
    </>
  );
}

interface FormProps {
  busy: boolean;
  onInvoke: (body: InvokeBody) => void;
}

function FunctionForm({ busy, onInvoke }: FormProps) {
  const [input, setInput] = useState('');
  const [args, setArgs] = useState('');
  const [env, setEnv] = useState('');
  const [problem, setProblem] = useState<string>();
  return (
    <form
      class="invoke"
      onSubmit={(event) => {
        event.preventDefault();
        try {
          setProblem(undefined);
          onInvoke({ input: { text: input }, args: lines(args), env: parseEnvLines(env) });
        } catch (failure) {
          setProblem(errorText(failure));
        }
      }}
    >
      <label for="invoke-input">Input (stdin)</label>
      <textarea id="invoke-input" rows={4} value={input} onInput={(event) => setInput(event.currentTarget.value)} />
      <label for="invoke-args">Arguments (one per line)</label>
      <textarea id="invoke-args" rows={2} value={args} onInput={(event) => setArgs(event.currentTarget.value)} />
      <label for="invoke-env">Environment (KEY=VALUE per line)</label>
      <textarea id="invoke-env" rows={2} value={env} onInput={(event) => setEnv(event.currentTarget.value)} />
      <button type="submit" class="primary" disabled={busy}>
        Invoke
      </button>
      <Problem text={problem} />
    </form>
  );
}

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

function FilterForm({ busy, onInvoke }: FormProps) {
  const [method, setMethod] = useState('GET');
  const [path, setPath] = useState('/');
  const [headers, setHeaders] = useState('');
  const [body, setBody] = useState('');
  const [problem, setProblem] = useState<string>();
  return (
    <form
      class="invoke"
      onSubmit={(event) => {
        event.preventDefault();
        try {
          setProblem(undefined);
          onInvoke({ request: { method, path, headers: parseHeaderLines(headers), ...(body ? { body: { text: body } } : {}) } });
        } catch (failure) {
          setProblem(errorText(failure));
        }
      }}
    >
      <label for="invoke-method">Method</label>
      <select id="invoke-method" value={method} onChange={(event) => setMethod(event.currentTarget.value)}>
        {METHODS.map((name) => (
          <option key={name}>{name}</option>
        ))}
      </select>
      <label for="invoke-path">Path</label>
      <input id="invoke-path" value={path} onInput={(event) => setPath(event.currentTarget.value)} />
      <label for="invoke-headers">Headers (name: value per line)</label>
      <textarea id="invoke-headers" rows={3} value={headers} onInput={(event) => setHeaders(event.currentTarget.value)} />
      <label for="invoke-body">Body</label>
      <textarea id="invoke-body" rows={3} value={body} onInput={(event) => setBody(event.currentTarget.value)} />
      <button type="submit" class="primary" disabled={busy}>
        Invoke
      </button>
      <Problem text={problem} />
    </form>
  );
}

function Pairs({ pairs, label }: { pairs: Array<[string, string]>; label: string }) {
  if (pairs.length === 0) return null;
  return (
    <>
      <h3>{label}</h3>
      <pre class="pairs">{pairs.map(([key, value]) => `${key}: ${value}`).join('\n')}</pre>
    </>
  );
}

function ResultView({ result }: { result: InvokeResult }) {
  return (
    <section aria-labelledby="result-title" class="result">
      <h2 id="result-title">Result</h2>
      <p>
        Outcome: <strong class={result.outcome === 'ok' ? 'ok' : 'error'}>{result.outcome}</strong>
        {result.message ? ` — ${result.message}` : ''}
      </p>
      {result.kind === 'wasi-command' ? (
        <>
          <p>
            Exit code {result.exitCode ?? '–'} · {formatMs(result.durationMs)} · module {formatBytes(result.module.size)}
          </p>
          <h3>stdout</h3>
          <pre data-testid="stdout">{result.stdout.text}</pre>
          <h3>stderr</h3>
          <pre>{result.stderr.text}</pre>
        </>
      ) : result.kind === 'http-component' ? (
        <ComponentResultDetails result={result} />
      ) : (
        <FilterResultDetails result={result} />
      )}
      {result.kind !== 'http-component' && result.stack && result.stack.length > 0 && <pre>{result.stack.join('\n')}</pre>}
    </section>
  );
}

/** An http-component answers the request itself: its response, its log lines, the outgoing calls it tried. */
function ComponentResultDetails({ result }: { result: ComponentResultView }) {
  return (
    <>
      <p>
        Handler {formatMs(result.timings.handleMs)} · total {formatMs(result.timings.totalMs)} · component {formatBytes(result.module.size)}
      </p>
      {result.response && (
        <>
          <h3>Response {result.response.status}</h3>
          <Pairs label="Response headers" pairs={result.response.headers} />
          <pre data-testid="response-body">{result.response.body.text}</pre>
        </>
      )}
      <h3>Log</h3>
      <pre>{result.logs.map((entry) => `${entry.stream}: ${entry.line}`).join('\n')}</pre>
      {result.outgoing.length > 0 && (
        <>
          <h3>Outgoing requests</h3>
          <ul>
            {result.outgoing.map((call, index) => (
              <li key={index}>
                {call.authority}
                {call.pathWithQuery} — {call.allowed ? 'allowed' : 'refused (not an allowed upstream)'}
              </li>
            ))}
          </ul>
        </>
      )}
    </>
  );
}

function FilterResultDetails({ result }: { result: FilterResultView }) {
  return (
    <>
      <p>
        Guest {formatMs(result.timings.guestMs)} · total {formatMs(result.timings.totalMs)} · module {formatBytes(result.module.size)}
      </p>
      <h3>Request {result.request.forwarded ? `forwarded to ${result.upstream?.name ?? 'the upstream'}` : '(not forwarded)'}</h3>
      <p>
        {result.request.method} {result.request.path}
      </p>
      <Pairs label="Request headers" pairs={result.request.headers} />
      {result.response && (
        <>
          <h3>Response ({result.response.source})</h3>
          <p>
            Status <strong data-testid="response-status">{result.response.status}</strong>
          </p>
          <Pairs label="Response headers" pairs={result.response.headers} />
          <h3>Response body</h3>
          <pre>{result.response.body.base64 !== undefined ? `(${formatBytes(result.response.body.size)} of binary data)` : result.response.body.text}</pre>
        </>
      )}
      <h3>Filter log</h3>
      {result.logs.length === 0 ? <p>(empty)</p> : <pre class="filter-log">{result.logs.map((entry) => `${entry.level.padEnd(8)} ${entry.message}`).join('\n')}</pre>}
    </>
  );
}
