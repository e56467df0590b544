import { useState } from 'preact/hooks';
import { Api, ApiError, errorText } from '../api.ts';

/**
 * The token is checked with one harmless call before it is kept: a wrong
 * token shows why and nothing else.
 */
export function SignIn({ notice, onSignedIn }: { notice?: string; onSignedIn: (token: string) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const candidate = token.trim();
    if (!candidate) {
      setError('Paste an API token first.');
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      await new Api(candidate).listApplications();
      onSignedIn(candidate);
    } catch (failure) {
      setError(failure instanceof ApiError && (failure.status === 401 || failure.status === 403) ? `This token was not accepted: ${failure.message}` : errorText(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="sign-in">
      <h1>Kiln</h1>
      <p>Sign in with an owner API token. On the machine running Kiln, yours is in <code>.kiln/local-token</code>.</p>
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      <form onSubmit={submit}>
        <label for="token">Token</label>
        <input id="token" name="token" type="password" autocomplete="off" spellcheck={false} value={token} onInput={(event) => setToken(event.currentTarget.value)} />
        <button type="submit" class="primary" disabled={busy}>
          Sign in
        </button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </main>
  );
}
