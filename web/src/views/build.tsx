import { useEffect, useRef, useState } from 'preact/hooks';
import { errorText, TERMINAL_STATES, type Build } from '../api.ts';
import { compilerOf, formatBytes, formatMs, formatTime, variantFacts } from '../format.ts';
import type { PageContext } from '../main.tsx';
import { href, navigate } from '../route.ts';
import { isErrorLine } from '../log-errors.ts';
import { Problem, StateBadge } from './parts.tsx';

/** Lines drawn at most (the newest); the API caps a log at 4 MiB by default, which is more than a page can hold. */
export const MAX_LOG_LINES = 20_000;

export function BuildPage({ api, buildId }: PageContext & { buildId: string }) {
  const [build, setBuild] = useState<Build>();
  const [log, setLog] = useState('');
  const [following, setFollowing] = useState(false);
  const [error, setError] = useState<string>();

  useEffect(() => {
    const abort = new AbortController();
    setBuild(undefined);
    setLog('');
    setError(undefined);
    const finish = async () => {
      const [final, text] = await Promise.all([api.getBuild(buildId), api.getBuildLog(buildId)]);
      if (abort.signal.aborted) return;
      setBuild(final);
      setLog(text);
    };
    const run = async () => {
      const first = await api.getBuild(buildId);
      if (abort.signal.aborted) return;
      setBuild(first);
      if (!TERMINAL_STATES.includes(first.state)) {
        setFollowing(true);
        await api.followLog(buildId, (text) => setLog((previous) => previous + text), setBuild, abort.signal);
        setFollowing(false);
      }
      // The stored log is the whole truth once the build ended (and after a dropped stream).
      await finish();
    };
    run().catch((failure: unknown) => {
      if (!abort.signal.aborted) setError(errorText(failure));
      setFollowing(false);
    });
    return () => abort.abort();
  }, [api, buildId]);

  const act = async (action: () => Promise<Build>, follow: boolean) => {
    try {
      const next = await action();
      if (follow) navigate(href.build(next.id));
      else setBuild(next);
    } catch (failure) {
      setError(errorText(failure));
    }
  };

  if (!build) return error ? <Problem text={error} /> : <p>Loading…</p>;
  const running = !TERMINAL_STATES.includes(build.state);
  return (
    <>
      <p>
        <a href={href.app(build.applicationId)}>← Application</a>
      </p>
      <h1>
        Build #{build.number} <StateBadge state={build.state} />
      </h1>
      <Problem text={error} />
      <div class="actions">
        {running && (
          <button type="button" onClick={() => act(() => api.cancelBuild(build.id), false)} disabled={build.cancelRequested}>
            {build.cancelRequested ? 'Cancelling…' : 'Cancel build'}
          </button>
        )}
        {!running && (
          <button type="button" onClick={() => act(() => api.rebuild(build.versionId), true)}>
            Rebuild
          </button>
        )}
        {build.state === 'succeeded' && (
          <a class="button" href={href.tryVersion(build.versionId)}>
            Try it
          </a>
        )}
      </div>
      <BuildFacts build={build} />
      <LogView log={log} following={following} />
    </>
  );
}

function BuildFacts({ build }: { build: Build }) {
  const original = variantFacts(build, 'original');
  const optimized = variantFacts(build, 'optimized');
  const facts: Array<[string, string]> = [
    ['State', build.state],
    ['Language', build.language ?? '–'],
    ['Kind', build.kind ?? '–'],
    ['Compiler', compilerOf(build) ?? '–'],
    ['Queued', formatTime(build.createdAt)],
    ['Duration', formatMs(build.durationMs)],
    ['Stages', build.stages.map((stage) => `${stage.name} ${formatMs(stage.durationMs)}`).join(' · ') || '–'],
    ['Size', `${formatBytes(original.bytes)} original → ${formatBytes(optimized.bytes)} optimized`],
    ['Start-up', `${formatMs(original.startupMs)} original → ${formatMs(optimized.startupMs)} optimized`],
  ];
  if (build.reason) facts.splice(1, 0, ['Reason', build.reason]);
  return (
    <dl class="facts">
      {facts.map(([name, value]) => (
        <div key={name} class={name === 'Stages' || name === 'Reason' ? 'wide' : undefined}>
          <dt>{name}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

function LogView({ log, following }: { log: string; following: boolean }) {
  const firstError = useRef<HTMLSpanElement>(null);
  const all = log.split('\n');
  if (all.at(-1) === '') all.pop();
  const dropped = Math.max(0, all.length - MAX_LOG_LINES);
  const lines = dropped > 0 ? all.slice(dropped) : all;
  const errorCount = lines.filter(isErrorLine).length;
  let firstSeen = false;
  return (
    <section aria-labelledby="log-title">
      <h2 id="log-title">Log {following && <span class="live">(live)</span>}</h2>
      <p role="status">
        {errorCount > 0 ? `${errorCount} error line${errorCount === 1 ? '' : 's'}. ` : following ? 'Following the build…' : 'No error lines.'}
        {errorCount > 0 && (
          <button
            type="button"
            onClick={() => {
              firstError.current?.scrollIntoView({ block: 'center' });
              firstError.current?.focus();
            }}
          >
            Jump to first error
          </button>
        )}
      </p>
      {dropped > 0 && <p>The first {dropped} lines are not shown.</p>}
      <pre class="log" aria-label="build log" tabIndex={0}>
        {lines.map((line, index) => {
          const error = isErrorLine(line);
          const first = error && !firstSeen;
          if (first) firstSeen = true;
          return (
            <span key={index} class={error ? 'line error-line' : 'line'} ref={first ? firstError : undefined} tabIndex={first ? -1 : undefined} id={first ? 'first-error' : undefined}>
              {line}
              {'\n'}
            </span>
          );
        })}
      </pre>
    </section>
  );
}
