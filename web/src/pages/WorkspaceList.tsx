// The workspaces page: search, status filter, sort, pagination, and the
// create form (a berth-managed directory, an optional git URL, or for
// admins the import of a host directory).
import { useEffect, useState } from "preact/hooks";
import { ago, describe, enumName, workspaces } from "../api";
import { link, navigate } from "../router";
import { type User } from "../gen/berth/v1/auth_pb";
import { Role } from "../gen/berth/v1/common_pb";
import { WorkspaceStatus, type Workspace } from "../gen/berth/v1/workspace_pb";
import type { Pagination } from "../gen/berth/v1/common_pb";

const statuses = ["", "active", "archived", "creating", "stopped", "starting", "running", "stopping", "error"];
const sorts: [string, string][] = [["-created_at", "Newest first"], ["created_at", "Oldest first"], ["name", "Name A–Z"], ["-name", "Name Z–A"]];

export function StatusBadge({ status }: { status: WorkspaceStatus }) {
  const n = enumName(WorkspaceStatus, status);
  return <span class={`badge s-${n}`}>{n}</span>;
}

export function WorkspaceList({ user }: { user: User }) {
  const [list, setList] = useState<Workspace[]>([]);
  const [pg, setPg] = useState<Pagination | undefined>();
  const [page, setPage] = useState(1);
  const [search, setSearch] = useState("");
  const [status, setStatus] = useState("");
  const [sort, setSort] = useState("-created_at");
  const [error, setError] = useState("");
  const [loading, setLoading] = useState(true);
  const [showCreate, setShowCreate] = useState(false);

  useEffect(() => {
    const ctl = new AbortController();
    setLoading(true);
    const t = setTimeout(() => {
      workspaces.listWorkspaces({ page, pageSize: 20, search, status, sort }, { signal: ctl.signal }).then(
        (r) => { setList(r.workspaces); setPg(r.pagination); setError(""); setLoading(false); },
        (e) => { if (!ctl.signal.aborted) { setError(describe(e)); setLoading(false); } },
      );
    }, search ? 250 : 0);
    return () => { clearTimeout(t); ctl.abort(); };
  }, [page, search, status, sort]);

  return (
    <section>
      <div class="titlebar">
        <h1>Workspaces</h1>
        <button type="button" class="primary" onClick={() => setShowCreate(!showCreate)} aria-expanded={showCreate}>New workspace</button>
      </div>
      {showCreate && <CreateWorkspace isAdmin={user.role === Role.ADMIN} />}
      <div class="filters" role="search">
        <label>Search<input type="search" value={search} onInput={(e) => { setSearch(e.currentTarget.value); setPage(1); }} /></label>
        <label>Status<select value={status} onChange={(e) => { setStatus(e.currentTarget.value); setPage(1); }}>
          {statuses.map((s) => <option value={s}>{s || "any"}</option>)}
        </select></label>
        <label>Sort<select value={sort} onChange={(e) => setSort(e.currentTarget.value)}>
          {sorts.map(([v, l]) => <option value={v}>{l}</option>)}
        </select></label>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      <table class="list" aria-busy={loading}>
        <thead><tr><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Tasks</th><th scope="col">Created</th></tr></thead>
        <tbody>
          {list.map((w) => (
            <tr>
              <td><a href={`/workspaces/${w.id}`} onClick={link}>{w.name}</a>{w.description && <div class="muted">{w.description}</div>}</td>
              <td><StatusBadge status={w.status} /></td>
              <td>{String(w.stats?.totalTasks ?? 0n)}</td>
              <td>{ago(w.createdAt)}</td>
            </tr>
          ))}
          {!loading && list.length === 0 && <tr><td colSpan={4} class="muted">No workspaces{search || status ? " match" : " yet"}.</td></tr>}
        </tbody>
      </table>
      {pg && pg.totalPages > 1 && (
        <nav class="pager" aria-label="Pages">
          <button type="button" disabled={!pg.hasPrev} onClick={() => setPage(page - 1)}>Previous</button>
          <span>Page {pg.page} of {pg.totalPages} ({String(pg.total)} workspaces)</span>
          <button type="button" disabled={!pg.hasNext} onClick={() => setPage(page + 1)}>Next</button>
        </nav>
      )}
    </section>
  );
}

function CreateWorkspace({ isAdmin }: { isAdmin: boolean }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [gitUrl, setGitUrl] = useState("");
  const [branch, setBranch] = useState("");
  const [path, setPath] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (ev: Event) => {
    ev.preventDefault();
    setBusy(true);
    setError("");
    try {
      const r = await workspaces.createWorkspace({ name, description, gitUrl, branch, path });
      navigate(`/workspaces/${r.workspace!.id}`);
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-label="New workspace">
      <label>Name<input name="name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
      <label>Description<input name="description" maxLength={500} value={description} onInput={(e) => setDescription(e.currentTarget.value)} /></label>
      <label>Git URL (optional, cloned by the first task)<input name="git_url" value={gitUrl} onInput={(e) => setGitUrl(e.currentTarget.value)} /></label>
      <label>Branch (optional)<input name="branch" value={branch} onInput={(e) => setBranch(e.currentTarget.value)} /></label>
      {isAdmin && <label>Import host directory (admins; empty: berth creates one)<input name="path" value={path} onInput={(e) => setPath(e.currentTarget.value)} /></label>}
      {error && <p class="error" role="alert">{error}</p>}
      <button type="submit" class="primary" disabled={busy}>{busy ? "Creating…" : "Create workspace"}</button>
    </form>
  );
}
