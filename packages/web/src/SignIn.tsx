import { useQuery } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { checkToken, devToken, listDevUsers, signIn, tokenClaims } from './session';

/**
 * Development: one button per seeded user (the gateway's dev sign-in).
 * Elsewhere (404): paste a token from the real auth system.
 */
export function SignIn({ notice }: { notice?: string }) {
  const users = useQuery({ queryKey: ['dev', 'users'], queryFn: listDevUsers, retry: false, staleTime: Infinity });
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const pick = async (username: string, displayName: string) => {
    setBusy(username);
    setError(null);
    try {
      const { token } = await devToken(username);
      signIn({ token, username, displayName, source: 'dev' });
    } catch (err) {
      setError(`Could not sign in as ${username}: ${(err as Error).message}`);
      setBusy(null);
    }
  };

  return (
    <div className="signin">
      <div className="signin-card">
        <h1>Chat</h1>
        {notice && (
          <p className="notice" role="status">
            {notice}
          </p>
        )}
        {users.isPending && <p className="muted">Loading…</p>}
        {users.data && (
          <>
            <p className="muted">Development sign-in: pick a user.</p>
            <ul className="signin-users">
              {users.data.map((u) => (
                <li key={u.id}>
                  <button
                    type="button"
                    className="button signin-user"
                    data-testid={`signin-user-${u.username}`}
                    disabled={busy !== null}
                    onClick={() => void pick(u.username, u.displayName)}
                  >
                    <span className="avatar" aria-hidden="true">
                      {u.displayName.charAt(0).toUpperCase()}
                    </span>
                    <span>
                      {u.displayName} <span className="muted">@{u.username}</span>
                    </span>
                  </button>
                </li>
              ))}
            </ul>
          </>
        )}
        {(users.data === null || users.isError) && (
          <>
            <p className="muted" data-testid="dev-signin-off">
              {users.isError ? 'Could not reach the server for development sign-in.' : 'Development sign-in is off on this server.'} Sign in
              with a token from your account instead.
            </p>
            <TokenForm />
          </>
        )}
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
      </div>
    </div>
  );
}

function TokenForm() {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const value = token.trim();
    if (!value) return;
    setBusy(true);
    setError(null);
    const verdict = await checkToken(value);
    setBusy(false);
    if (verdict === 'refused') return setError('That token was refused (expired, or not for this server).');
    if (verdict === 'unreachable') return setError('Could not reach the server; try again.');
    const claims = tokenClaims(value);
    signIn({ token: value, username: claims.username ?? claims.sub ?? 'me', displayName: claims.name ?? null, source: 'token' });
  };

  return (
    <form className="token-form" onSubmit={(e) => void submit(e)}>
      <label htmlFor="token-input">Access token</label>
      <textarea
        id="token-input"
        data-testid="token-input"
        value={token}
        onChange={(e) => setToken(e.target.value)}
        rows={4}
        spellCheck={false}
        autoComplete="off"
        placeholder="eyJhbGciOi…"
      />
      <button type="submit" className="button primary" data-testid="token-submit" disabled={busy || !token.trim()}>
        {busy ? 'Checking…' : 'Sign in'}
      </button>
      {error && (
        <p className="error" role="alert" data-testid="token-error">
          {error}
        </p>
      )}
    </form>
  );
}
