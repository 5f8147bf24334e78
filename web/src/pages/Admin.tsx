// Admin: users (role, disable / enable), the audit log with filters, and
// the server-wide numbers.
import { useEffect, useState } from "preact/hooks";
import { admin, describe, enumName, stats, when } from "../api";
import { type User } from "../gen/berth/v1/auth_pb";
import { Role } from "../gen/berth/v1/common_pb";
import type { AuditEvent } from "../gen/berth/v1/admin_pb";
import type { GetStatsResponse } from "../gen/berth/v1/stats_pb";

export function Admin({ self }: { self: User }) {
  return (
    <section>
      <h1>Admin</h1>
      <GlobalStats />
      <Users self={self} />
      <Audit />
    </section>
  );
}

function GlobalStats() {
  const [s, setS] = useState<GetStatsResponse | undefined>();
  const [error, setError] = useState("");
  useEffect(() => { stats.getStats({ global: true }).then(setS, (e) => setError(describe(e))); }, []);
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!s) return null;
  return (
    <>
      <h2>Server</h2>
      <dl class="facts">
        <dt>Users</dt><dd>{String(s.users ?? 0n)}</dd>
        <dt>Workspaces</dt><dd>{String(s.workspaces)} ({Object.entries(s.workspacesByStatus).map(([k, v]) => `${v} ${k}`).join(", ") || "none"})</dd>
        <dt>Tasks</dt><dd>{String(s.tasks)} ({Object.entries(s.tasksByStatus).map(([k, v]) => `${v} ${k}`).join(", ") || "none"})</dd>
        <dt>Agent cost</dt><dd>${s.totalCostUsd.toFixed(4)}</dd>
      </dl>
    </>
  );
}

function Users({ self }: { self: User }) {
  const [users, setUsers] = useState<User[]>([]);
  const [search, setSearch] = useState("");
  const [error, setError] = useState("");
  const [n, setN] = useState(0);
  useEffect(() => {
    admin.listUsers({ pageSize: 100, search }).then((r) => setUsers(r.users), (e) => setError(describe(e)));
  }, [search, n]);
  const run = (f: () => Promise<unknown>) => f().then(() => { setError(""); setN(n + 1); }, (e) => setError(describe(e)));
  return (
    <>
      <h2>Users</h2>
      <div class="filters" role="search"><label>Search users<input type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} /></label></div>
      {error && <p class="error" role="alert">{error}</p>}
      <table class="list" aria-label="Users">
        <thead><tr><th scope="col">User</th><th scope="col">Role</th><th scope="col">State</th><th scope="col">Last sign-in</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>
          {users.map((u) => (
            <tr data-email={u.email}>
              <td>{u.name} <span class="muted">{u.email}</span></td>
              <td>
                <select aria-label={`Role of ${u.email || u.name}`} value={u.role} disabled={u.id === self.id}
                  onChange={(e) => run(() => admin.setUserRole({ userId: u.id, role: Number(e.currentTarget.value) }))}>
                  {[Role.ADMIN, Role.MEMBER, Role.VIEWER].map((r) => <option value={r}>{enumName(Role, r)}</option>)}
                </select>
              </td>
              <td>{u.disabled ? "disabled" : "active"}</td>
              <td>{when(u.lastLoginAt)}</td>
              <td>{u.id !== self.id && (u.disabled
                ? <button type="button" onClick={() => run(() => admin.enableUser({ userId: u.id }))}>Enable</button>
                : <button type="button" class="danger" onClick={() => run(() => admin.disableUser({ userId: u.id }))}>Disable</button>)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function Audit() {
  const [events, setEvents] = useState<AuditEvent[]>([]);
  const [action, setAction] = useState("");
  const [actorId, setActorId] = useState("");
  const [targetId, setTargetId] = useState("");
  const [page, setPage] = useState(1);
  const [hasNext, setHasNext] = useState(false);
  const [error, setError] = useState("");
  useEffect(() => {
    const ctl = new AbortController();
    admin.listAuditEvents({ page, pageSize: 50, action, actorId, targetId }, { signal: ctl.signal }).then(
      (r) => { setEvents(r.events); setHasNext(r.pagination?.hasNext ?? false); setError(""); },
      (e) => { if (!ctl.signal.aborted) setError(describe(e)); },
    );
    return () => ctl.abort();
  }, [action, actorId, targetId, page]);
  return (
    <>
      <h2>Audit log</h2>
      <div class="filters">
        <label>Action<input value={action} placeholder="auth.login" onInput={(e) => { setAction(e.currentTarget.value); setPage(1); }} /></label>
        <label>Actor id<input value={actorId} onInput={(e) => { setActorId(e.currentTarget.value); setPage(1); }} /></label>
        <label>Target id<input value={targetId} onInput={(e) => { setTargetId(e.currentTarget.value); setPage(1); }} /></label>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      <table class="list" aria-label="Audit events">
        <thead><tr><th scope="col">Time</th><th scope="col">Action</th><th scope="col">Outcome</th><th scope="col">Actor</th><th scope="col">Target</th><th scope="col">Request</th></tr></thead>
        <tbody>
          {events.map((e) => (
            <tr>
              <td>{when(e.time)}</td><td>{e.action}</td><td>{e.outcome}</td>
              <td><code>{e.actorId.slice(0, 8)}</code></td><td>{e.targetType} <code>{e.targetId.slice(0, 8)}</code></td>
              <td><code>{e.requestId.slice(0, 8)}</code></td>
            </tr>
          ))}
        </tbody>
      </table>
      <nav class="pager" aria-label="Audit pages">
        <button type="button" disabled={page <= 1} onClick={() => setPage(page - 1)}>Previous</button>
        <span>Page {page}</span>
        <button type="button" disabled={!hasNext} onClick={() => setPage(page + 1)}>Next</button>
      </nav>
    </>
  );
}
