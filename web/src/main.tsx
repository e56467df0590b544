import { render } from 'preact';
import { useCallback, useMemo, useState } from 'preact/hooks';
import { Api, ApiError } from './api.ts';
import { ConfirmDialog, type ConfirmRequest } from './confirm.tsx';
import { href, useRoute } from './route.ts';
import { forgetToken, loadToken, saveToken } from './session.ts';
import { AppsPage } from './views/apps.tsx';
import { AppPage } from './views/app.tsx';
import { BuildPage } from './views/build.tsx';
import { SignIn } from './views/sign-in.tsx';
import { TryLatestPage, TryPage } from './views/try.tsx';
import './style.css';

/** What every page gets: the API client and a way to ask for confirmation. */
export interface PageContext {
  api: Api;
  confirm: (request: ConfirmRequest) => void;
}

function Root() {
  const [token, setToken] = useState(loadToken);
  const [expired, setExpired] = useState<string>();
  const [confirmRequest, setConfirmRequest] = useState<ConfirmRequest>();
  const route = useRoute();

  const signOut = useCallback((reason?: string) => {
    forgetToken();
    setToken(undefined);
    setExpired(reason);
  }, []);
  const api = useMemo(() => (token ? new Api(token, (error: ApiError) => signOut(`Kiln no longer accepts this token: ${error.message}`)) : undefined), [token, signOut]);

  if (!api) {
    return (
      <SignIn
        notice={expired}
        onSignedIn={(accepted) => {
          saveToken(accepted);
          setExpired(undefined);
          setToken(accepted);
        }}
      />
    );
  }
  const context: PageContext = { api, confirm: setConfirmRequest };
  return (
    <>
      <header class="top">
        <a class="brand" href={href.apps()}>
          Kiln
        </a>
        <nav aria-label="Main">
          <a href={href.apps()}>Applications</a>
          <a href="/docs">API docs</a>
        </nav>
        <button type="button" onClick={() => signOut()}>
          Sign out
        </button>
      </header>
      <main>
        {route.page === 'apps' && <AppsPage {...context} />}
        {route.page === 'app' && <AppPage {...context} applicationId={route.applicationId} />}
        {route.page === 'build' && <BuildPage {...context} buildId={route.buildId} />}
        {route.page === 'try' && <TryPage {...context} versionId={route.versionId} />}
        {route.page === 'try-latest' && <TryLatestPage {...context} applicationId={route.applicationId} />}
      </main>
      <ConfirmDialog request={confirmRequest} onClose={() => setConfirmRequest(undefined)} />
    </>
  );
}

const root = document.getElementById('root');
if (root) render(<Root />, root);
