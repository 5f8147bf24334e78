// A task: status, progress, cost and tokens, cancel, continue, and its live
// log. The log resumes after a dropped stream (or a restarted server) from
// the last seq it holds: a line it already has is skipped, and a gap is
// filled from GetTaskLogs before the next line is shown, so the log has no
// gap and no duplicate.
import { useEffect, useRef, useState } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import { describe, enumName, isCode, tasks, when } from "../api";
import { link } from "../router";
import { TaskStatus, TaskType, type LogEntry, type Task } from "../gen/berth/v1/task_pb";
import { LogView } from "../LogView";
import { TaskBadge } from "./WorkspacePage";
import { NewTask } from "./NewTask";

const finished = (s: TaskStatus) => s >= TaskStatus.SUCCEEDED;

export function TaskPage({ id }: { id: string }) {
  const [task, setTask] = useState<Task | undefined>();
  const [error, setError] = useState("");
  const [version, setVersion] = useState(0);
  const [conn, setConn] = useState("connecting");
  const [reconnects, setReconnects] = useState(0);
  const [cancelling, setCancelling] = useState(false);
  const lines = useRef<LogEntry[]>([]);

  useEffect(() => {
    lines.current = [];
    const ctl = new AbortController();
    let frame = 0;
    const bump = () => {
      if (!frame) frame = requestAnimationFrame(() => { frame = 0; setVersion((v) => v + 1); });
    };
    const lastSeq = () => (lines.current.length ? lines.current[lines.current.length - 1].seq : 0n);
    const add = async (e: LogEntry) => {
      if (e.seq <= lastSeq()) return; // already shown (a resumed stream repeats nothing, but be sure)
      while (e.seq > lastSeq() + 1n) { // a gap: fetch what is missing
        const r = await tasks.getTaskLogs({ taskId: id, afterSeq: lastSeq(), limit: 1000 }, { signal: ctl.signal });
        for (const m of r.entries) if (m.seq === lastSeq() + 1n && m.seq < e.seq) lines.current.push(m);
        if (!r.hasMore || r.entries.length === 0) break;
      }
      lines.current.push(e);
      bump();
    };
    tasks.getTask({ id }).then((r) => setTask(r.task), (e) => setError(describe(e)));
    (async () => {
      let wait = 300;
      let n = 0;
      while (!ctl.signal.aborted) {
        try {
          setConn(n ? "reconnecting" : "connecting");
          for await (const r of tasks.streamTaskLogs({ taskId: id, fromSeq: lastSeq() + 1n }, { signal: ctl.signal })) {
            setConn("live");
            wait = 300;
            const ev = r.event;
            if (ev.case === "log") await add(ev.value);
            else if (ev.case === "status") setTask((t) => t && ({ ...t, status: ev.value }) as Task);
            else if (ev.case === "progress") setTask((t) => t && ({ ...t, progress: ev.value }) as Task);
            else if (ev.case === "end") {
              const t = await tasks.getTask({ id }); // the result, cost and tokens
              setTask(t.task);
              setConn("complete");
              return;
            }
          }
        } catch (e) {
          if (ctl.signal.aborted) return;
          if (isCode(e, Code.NotFound) || isCode(e, Code.PermissionDenied) || isCode(e, Code.Unauthenticated) || isCode(e, Code.InvalidArgument)) {
            setError(describe(e));
            setConn("closed");
            return;
          }
        }
        n++;
        setReconnects(n);
        setConn("reconnecting");
        await new Promise((f) => setTimeout(f, wait));
        wait = Math.min(wait * 2, 3000);
      }
    })();
    return () => { ctl.abort(); cancelAnimationFrame(frame); };
  }, [id]);

  if (!task) return error ? <p class="error" role="alert">{error}</p> : <p role="status">Loading…</p>;
  const d = (task.result?.details ?? {}) as Record<string, any>;
  const usage = d.usage as Record<string, number> | undefined;
  const pct = task.progress?.percentage ?? 0;
  const cancel = async () => {
    setCancelling(true);
    try {
      const r = await tasks.cancelTask({ id });
      setTask(r.task);
    } catch (e) {
      setError(describe(e));
    } finally {
      setCancelling(false);
    }
  };
  return (
    <section>
      <p><a href={`/workspaces/${task.workspaceId}`} onClick={link}>← Workspace</a></p>
      <div class="titlebar">
        <h1>{enumName(TaskType, task.type)} task</h1>
        <TaskBadge status={task.status} />
        <span class={`live ${conn === "live" ? "on" : ""}`} data-testid="stream" data-state={conn} data-reconnects={reconnects}>{conn}</span>
      </div>
      {task.prompt && <blockquote class="prompt">{task.prompt}</blockquote>}
      {error && <p class="error" role="alert">{error}</p>}
      <div class="progress">
        <progress max={100} value={finished(task.status) && task.status === TaskStatus.SUCCEEDED ? 100 : pct} aria-label="Progress" />
        <span>{task.progress?.message || (task.progress?.total ? `${task.progress.current} / ${task.progress.total}` : "")}</span>
      </div>
      <dl class="facts">
        <dt>Created</dt><dd>{when(task.createdAt)}</dd>
        {task.completedAt && <><dt>Finished</dt><dd>{when(task.completedAt)}</dd></>}
        {d.total_cost_usd !== undefined && <><dt>Cost</dt><dd data-testid="cost">${Number(d.total_cost_usd).toFixed(4)}</dd></>}
        {usage && <><dt>Tokens</dt><dd>{usage.input_tokens ?? 0} in, {usage.output_tokens ?? 0} out</dd></>}
        {d.num_turns !== undefined && <><dt>Turns</dt><dd>{d.num_turns}</dd></>}
        {task.error && <><dt>Error</dt><dd class="error">{task.error.code}: {task.error.message}</dd></>}
        {task.result?.summary && <><dt>Result</dt><dd>{task.result.summary}</dd></>}
      </dl>
      <div class="actions">
        {!finished(task.status) && <button type="button" class="danger" disabled={cancelling} onClick={cancel}>{cancelling ? "Cancelling…" : "Cancel task"}</button>}
      </div>
      <LogView lines={lines.current} version={version} />
      {finished(task.status) && task.type === TaskType.CLAUDE_CHAT && (
        <>
          <h2>Continue</h2>
          <NewTask workspaceId={task.workspaceId} continueTaskId={task.id} />
        </>
      )}
    </section>
  );
}
