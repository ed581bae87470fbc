import { useState, type FormEvent } from 'react';
import { usePageTitle } from '../components/usePageTitle';
import { useSession } from '../session/SessionContext';

export function SignInPage() {
  usePageTitle('Sign in');
  const { signIn, state } = useSession();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const busy = state.status === 'signingIn';
  const notice = state.status === 'signedOut' ? state.notice : null;

  function submit(event: FormEvent) {
    event.preventDefault();
    void signIn(username, password);
  }

  return (
    <main className="signin">
      <h1>Sign in to aiaas</h1>
      <form onSubmit={submit} className="panel stack">
        <label>
          Username
          <input name="username" autoComplete="username" required value={username} onChange={(e) => setUsername(e.target.value)} />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        {notice && (
          <p role="alert" className="error">
            {notice}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
