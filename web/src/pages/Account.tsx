// Account: who is signed in, and API keys (a new key is shown once).
import { useEffect, useState } from "preact/hooks";
import { auth, describe, enumName, when } from "../api";
import { type ApiKey, type User } from "../gen/berth/v1/auth_pb";
import { Role } from "../gen/berth/v1/common_pb";

export function Account({ user }: { user: User }) {
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [name, setName] = useState("");
  const [role, setRole] = useState(Role.UNSPECIFIED);
  const [created, setCreated] = useState("");
  const [error, setError] = useState("");
  const [n, setN] = useState(0);
  useEffect(() => {
    auth.listApiKeys({}).then((r) => setKeys(r.apiKeys), (e) => setError(describe(e)));
  }, [n]);
  const create = async (ev: Event) => {
    ev.preventDefault();
    setError("");
    try {
      const r = await auth.createApiKey({ name, role });
      setCreated(r.key);
      setName("");
      setN(n + 1);
    } catch (e) {
      setError(describe(e));
    }
  };
  const revoke = async (k: ApiKey) => {
    if (!confirm(`Revoke key ${k.name}?`)) return;
    try {
      await auth.revokeApiKey({ id: k.id });
      setN(n + 1);
    } catch (e) {
      setError(describe(e));
    }
  };
  return (
    <section>
      <h1>Account</h1>
      <dl class="facts">
        <dt>Name</dt><dd>{user.name || "—"}</dd>
        <dt>Email</dt><dd>{user.email || "—"}</dd>
        <dt>Role</dt><dd>{enumName(Role, user.role)}</dd>
        <dt>Last sign-in</dt><dd>{when(user.lastLoginAt)}</dd>
      </dl>
      <h2>API keys</h2>
      <form class="inline" onSubmit={create} aria-label="New API key">
        <label>Name<input name="key_name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
        <label>Role<select value={role} onChange={(e) => setRole(Number(e.currentTarget.value))}>
          <option value={Role.UNSPECIFIED}>same as mine</option>
          <option value={Role.MEMBER}>member</option>
          <option value={Role.VIEWER}>viewer</option>
        </select></label>
        <button type="submit">Create key</button>
      </form>
      {created && (
        <div class="card secret" role="status">
          <p>Your new key — copy it now, it is not shown again:</p>
          <code data-testid="new-key">{created}</code>
          <button type="button" onClick={() => setCreated("")}>Done</button>
        </div>
      )}
      {error && <p class="error" role="alert">{error}</p>}
      <table class="list" aria-label="API keys">
        <thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Role</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">State</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>
          {keys.map((k) => (
            <tr>
              <td>{k.name}</td><td><code>{k.prefix}</code></td><td>{enumName(Role, k.role)}</td>
              <td>{when(k.createdAt)}</td><td>{when(k.lastUsedAt)}</td>
              <td>{k.revokedAt ? "revoked" : "active"}</td>
              <td>{!k.revokedAt && <button type="button" onClick={() => revoke(k)}>Revoke</button>}</td>
            </tr>
          ))}
          {keys.length === 0 && <tr><td colSpan={7} class="muted">No API keys.</td></tr>}
        </tbody>
      </table>
    </section>
  );
}
