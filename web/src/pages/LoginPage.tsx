import { useEffect, useState, type FormEvent } from "react";

import { api, ApiError } from "../api";
import type { Session } from "../auth";

export function LoginPage({ onLogin, notice }: { onLogin: (session: Session) => void; notice?: string | null }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [mode, setMode] = useState<"login" | "register">("login");
  const [allowRegistration, setAllowRegistration] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.authOptions().then(
      (o) => setAllowRegistration(o.allow_registration),
      () => setAllowRegistration(false),
    );
  }, []);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (mode === "register") await api.register(username, password);
      const token = await api.login(username, password);
      const user = await api.me(token.access_token);
      onLogin({ token: token.access_token, user });
    } catch (e) {
      setError(e instanceof ApiError ? e.message : "Cannot reach the server");
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="login">
      <h1>reeltrack</h1>
      {notice && <p className="notice">{notice}</p>}
      <form onSubmit={(e) => void submit(e)} aria-label={mode === "login" ? "Log in" : "Register"}>
        <label>
          Username
          <input name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={mode === "login" ? "current-password" : "new-password"}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        {error && (
          <p className="error-text" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {mode === "login" ? "Log in" : "Create account"}
        </button>
      </form>
      {allowRegistration && (
        <button type="button" className="link" onClick={() => setMode(mode === "login" ? "register" : "login")}>
          {mode === "login" ? "No account? Register" : "Have an account? Log in"}
        </button>
      )}
    </main>
  );
}
