// One workspace: its state live from WatchWorkspace, start / stop /
// delete, sharing by email, its tasks (filtered) and the new-task form.
import { useEffect, useState } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import { ago, describe, enumName, isCode, tasks, workspaces } from "../api";
import { link, navigate } from "../router";
import type { User } from "../gen/berth/v1/auth_pb";
import { WorkspaceRole, WorkspaceStatus, type Member, type Workspace } from "../gen/berth/v1/workspace_pb";
import { TaskStatus, TaskType, type Task } from "../gen/berth/v1/task_pb";
import { StatusBadge } from "./WorkspaceList";
import { NewTask } from "./NewTask";

export function TaskBadge({ status }: { status: TaskStatus }) {
  const n = enumName(TaskStatus, status);
  return <span class={`badge t-${n.replace(" ", "-")}`}>{n}</span>;
}

export function WorkspacePage({ id, user }: { id: string; user: User }) {
  const [ws, setWs] = useState<Workspace | undefined>();
  const [error, setError] = useState("");
  const [busy, setBusy] = useState("");
  const [live, setLive] = useState(false);
  const [taskList, setTaskList] = useState<Task[]>([]);
  const [filterStatus, setFilterStatus] = useState(0);
  const [filterType, setFilterType] = useState(0);
  const [refresh, setRefresh] = useState(0);

  useEffect(() => {
    workspaces.getWorkspace({ id }).then((r) => setWs(r.workspace), (e) => setError(describe(e)));
  }, [id]);

  // Live state: WatchWorkspace, reconnected after a drop.
  useEffect(() => {
    const ctl = new AbortController();
    (async () => {
      let wait = 500;
      while (!ctl.signal.aborted) {
        try {
          for await (const r of workspaces.watchWorkspace({ workspaceId: id }, { signal: ctl.signal })) {
            setLive(true);
            wait = 500;
            const ev = r.event;
            if (!ev) continue;
            if (ev.workspace) setWs(ev.workspace);
            if (ev.kind.startsWith("task.")) setRefresh((n) => n + 1);
          }
        } catch (e) {
          if (ctl.signal.aborted || isCode(e, Code.NotFound) || isCode(e, Code.PermissionDenied) || isCode(e, Code.Unauthenticated)) break;
        }
        setLive(false);
        await new Promise((f) => setTimeout(f, wait));
        wait = Math.min(wait * 2, 5000);
      }
    })();
    return () => ctl.abort();
  }, [id]);

  useEffect(() => {
    const ctl = new AbortController();
    tasks.listTasks({ workspaceId: id, pageSize: 50, status: filterStatus, type: filterType }, { signal: ctl.signal }).then(
      (r) => setTaskList(r.tasks),
      (e) => { if (!ctl.signal.aborted) setError(describe(e)); },
    );
    return () => ctl.abort();
  }, [id, filterStatus, filterType, refresh]);

  const act = async (what: string, f: () => Promise<unknown>) => {
    setBusy(what);
    setError("");
    try {
      await f();
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy("");
    }
  };

  if (!ws) return error ? <p class="error" role="alert">{error}</p> : <p role="status">Loading…</p>;
  const running = ws.status === WorkspaceStatus.RUNNING;
  return (
    <section>
      <div class="titlebar">
        <h1>{ws.name}</h1>
        <StatusBadge status={ws.status} />
        <span class={live ? "live on" : "live"} title="live updates">{live ? "live" : "reconnecting"}</span>
      </div>
      {ws.statusReason && <p class="muted">{ws.statusReason}</p>}
      {error && <p class="error" role="alert">{error}</p>}
      <div class="actions">
        <button type="button" disabled={!!busy || running} onClick={() => act("start", () => workspaces.startWorkspace({ id }).then((r) => setWs(r.workspace)))}>{busy === "start" ? "Starting…" : "Start"}</button>
        <button type="button" disabled={!!busy || !running} onClick={() => act("stop", () => workspaces.stopWorkspace({ id }).then((r) => setWs(r.workspace)))}>{busy === "stop" ? "Stopping…" : "Stop"}</button>
        <button type="button" class="danger" disabled={!!busy} onClick={() => {
          if (confirm(`Delete workspace ${ws.name}? Its tasks and logs are deleted.`)) act("delete", () => workspaces.deleteWorkspace({ id, deleteDirectory: ws.managed }).then(() => navigate("/workspaces")));
        }}>Delete</button>
      </div>
      <dl class="facts">
        <dt>Directory</dt><dd><code>{ws.path}</code>{ws.managed ? " (berth-managed)" : " (imported)"}</dd>
        {ws.gitUrl && <><dt>Git</dt><dd><code>{ws.gitUrl}</code>{ws.branch && ` @ ${ws.branch}`}</dd></>}
        <dt>Image</dt><dd><code>{ws.image || "server default"}</code></dd>
        <dt>Resources</dt><dd>{ws.resources ? `${String(ws.resources.memoryMb)} MB memory, ${ws.resources.cpus} CPUs, ${String(ws.resources.pids)} processes` : "server defaults"}</dd>
        <dt>Tasks</dt><dd>{String(ws.stats?.totalTasks ?? 0n)} total, {String(ws.stats?.runningTasks ?? 0n)} running, {String(ws.stats?.completedTasks ?? 0n)} succeeded, {String(ws.stats?.failedTasks ?? 0n)} failed</dd>
        <dt>Created</dt><dd>{ago(ws.createdAt)}</dd>
      </dl>

      <h2>New task</h2>
      <NewTask workspaceId={id} />

      <h2>Tasks</h2>
      <div class="filters">
        <label>Status<select value={filterStatus} onChange={(e) => setFilterStatus(Number(e.currentTarget.value))}>
          {[0, 1, 2, 3, 4, 5, 6].map((s) => <option value={s}>{s ? enumName(TaskStatus, s) : "any"}</option>)}
        </select></label>
        <label>Type<select value={filterType} onChange={(e) => setFilterType(Number(e.currentTarget.value))}>
          {[0, 1, 2, 3].map((s) => <option value={s}>{s ? enumName(TaskType, s) : "any"}</option>)}
        </select></label>
      </div>
      <table class="list">
        <thead><tr><th scope="col">Task</th><th scope="col">Type</th><th scope="col">Status</th><th scope="col">Created</th></tr></thead>
        <tbody>
          {taskList.map((t) => (
            <tr>
              <td><a href={`/tasks/${t.id}`} onClick={link}>{(t.prompt || t.git?.operation && enumName(TaskType, t.type) || t.id).slice(0, 80)}</a></td>
              <td>{enumName(TaskType, t.type)}</td>
              <td><TaskBadge status={t.status} /></td>
              <td>{ago(t.createdAt)}</td>
            </tr>
          ))}
          {taskList.length === 0 && <tr><td colSpan={4} class="muted">No tasks.</td></tr>}
        </tbody>
      </table>

      <Members workspaceId={id} self={user} />
    </section>
  );
}

function Members({ workspaceId, self }: { workspaceId: string; self: User }) {
  const [members, setMembers] = useState<Member[]>([]);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState(WorkspaceRole.EDITOR);
  const [error, setError] = useState("");
  const [n, setN] = useState(0);
  useEffect(() => {
    workspaces.listMembers({ workspaceId }).then((r) => setMembers(r.members), (e) => setError(describe(e)));
  }, [workspaceId, n]);
  const share = async (ev: Event) => {
    ev.preventDefault();
    setError("");
    try {
      await workspaces.addMember({ workspaceId, email, role });
      setEmail("");
      setN(n + 1);
    } catch (e) {
      setError(describe(e));
    }
  };
  return (
    <>
      <h2>Sharing</h2>
      <table class="list" aria-label="Members">
        <thead><tr><th scope="col">Member</th><th scope="col">Role</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>
          {members.map((m) => (
            <tr>
              <td>{m.name || m.email} <span class="muted">{m.name && m.email}</span></td>
              <td>{enumName(WorkspaceRole, m.role)}</td>
              <td>{m.role !== WorkspaceRole.OWNER && m.userId !== self.id && (
                <button type="button" onClick={() => workspaces.removeMember({ workspaceId, userId: m.userId }).then(() => setN(n + 1), (e) => setError(describe(e)))}>Remove</button>
              )}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="inline" onSubmit={share} aria-label="Share workspace">
        <label>Email<input type="email" name="member_email" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} /></label>
        <label>Role<select value={role} onChange={(e) => setRole(Number(e.currentTarget.value))}>
          <option value={WorkspaceRole.EDITOR}>editor</option>
          <option value={WorkspaceRole.VIEWER}>viewer</option>
        </select></label>
        <button type="submit">Share</button>
      </form>
      {error && <p class="error" role="alert">{error}</p>}
    </>
  );
}
