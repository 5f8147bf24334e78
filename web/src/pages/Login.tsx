// Sign in: a password form that asks for a session cookie (no token ever
// reaches this script), a button per OIDC provider, and registration when
// the server has it open.
import { useEffect, useState } from "preact/hooks";
import { auth, describe } from "../api";
import type { AuthProvider, User } from "../gen/berth/v1/auth_pb";

export function Login({ onSignedIn }: { onSignedIn: (u: User) => void }) {
  const [providers, setProviders] = useState<AuthProvider[]>([]);
  const [open, setOpen] = useState(false);
  const [mode, setMode] = useState<"in" | "up">("in");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    auth.listAuthProviders({}).then(
      (r) => { setProviders(r.providers); setOpen(r.registrationOpen); },
      (e) => setError(describe(e)),
    );
  }, []);

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setBusy(true);
    setError("");
    try {
      if (mode === "up") await auth.register({ email, password, name });
      const r = await auth.login({ email, password, sessionCookie: true });
      onSignedIn(r.user!);
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card signin">
      <h1>{mode === "in" ? "Sign in to berth" : "Create an account"}</h1>
      <form onSubmit={submit}>
        <label>Email<input type="email" name="email" autoComplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} /></label>
        {mode === "up" && <label>Name<input name="name" autoComplete="name" value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>}
        <label>Password<input type="password" name="password" autoComplete={mode === "in" ? "current-password" : "new-password"} required minLength={mode === "up" ? 12 : undefined} value={password} onInput={(e) => setPassword(e.currentTarget.value)} /></label>
        {error && <p class="error" role="alert">{error}</p>}
        <button type="submit" class="primary" disabled={busy}>{busy ? "Signing in…" : mode === "in" ? "Sign in" : "Create account"}</button>
      </form>
      {providers.length > 0 && (
        <div class="providers">
          <p>or</p>
          {providers.map((p) => (
            <a class="button" href={`${p.loginUrl}${p.loginUrl.includes("?") ? "&" : "?"}return_to=${encodeURIComponent("/workspaces")}`}>
              Sign in with {p.displayName || p.name}
            </a>
          ))}
        </div>
      )}
      {open && (
        <p>
          {mode === "in" ? "No account yet? " : "Have an account? "}
          <button type="button" class="linklike" onClick={() => { setMode(mode === "in" ? "up" : "in"); setError(""); }}>
            {mode === "in" ? "Create one" : "Sign in"}
          </button>
        </p>
      )}
    </section>
  );
}
