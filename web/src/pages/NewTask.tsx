// The new-task form for each task type. A follow-up ("continue") passes
// continueTaskId from the task page.
import { useState } from "preact/hooks";
import { describe, enumName, tasks } from "../api";
import { navigate } from "../router";
import { GitOperationType, TaskPriority, TaskType } from "../gen/berth/v1/task_pb";

export function NewTask({ workspaceId, continueTaskId }: { workspaceId: string; continueTaskId?: string }) {
  const [type, setType] = useState(TaskType.CLAUDE_CHAT);
  const [prompt, setPrompt] = useState("");
  const [model, setModel] = useState("");
  const [maxTurns, setMaxTurns] = useState("");
  const [budget, setBudget] = useState("");
  const [systemPrompt, setSystemPrompt] = useState("");
  const [tools, setTools] = useState("");
  const [priority, setPriority] = useState(TaskPriority.MEDIUM);
  const [gitOp, setGitOp] = useState(GitOperationType.STATUS);
  const [gitUrl, setGitUrl] = useState("");
  const [ref, setRef] = useState("");
  const [message, setMessage] = useState("");
  const [paths, setPaths] = useState("");
  const [contextDir, setContextDir] = useState(".");
  const [dockerfile, setDockerfile] = useState("");
  const [tag, setTag] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const list = (s: string) => s.split(/[\s,]+/).filter(Boolean);

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setBusy(true);
    setError("");
    try {
      const r = await tasks.createTask({
        workspaceId,
        type,
        priority,
        prompt: type === TaskType.CLAUDE_CHAT ? prompt : "",
        continueTaskId: continueTaskId ?? "",
        config: type === TaskType.CLAUDE_CHAT ? {
          model, systemPrompt, allowedTools: list(tools),
          maxTurns: maxTurns ? Number(maxTurns) : 0, maxBudgetUsd: budget ? Number(budget) : 0,
        } : undefined,
        git: type === TaskType.GIT_OPERATION ? { operation: gitOp, url: gitUrl, ref, message, paths: list(paths) } : undefined,
        dockerBuild: type === TaskType.DOCKER_BUILD ? { contextDir, dockerfile, tag } : undefined,
      });
      navigate(`/tasks/${r.task!.id}`);
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(false);
    }
  };

  const inp = (label: string, name: string, v: string, set: (s: string) => void, extra: Record<string, unknown> = {}) => (
    <label>{label}<input name={name} value={v} onInput={(e) => set(e.currentTarget.value)} {...extra} /></label>
  );
  return (
    <form class="card" onSubmit={submit} aria-label={continueTaskId ? "Continue" : "New task"}>
      {!continueTaskId && (
        <label>Type<select name="type" value={type} onChange={(e) => setType(Number(e.currentTarget.value))}>
          {[TaskType.CLAUDE_CHAT, TaskType.GIT_OPERATION, TaskType.DOCKER_BUILD].map((t) => <option value={t}>{enumName(TaskType, t)}</option>)}
        </select></label>
      )}
      {type === TaskType.CLAUDE_CHAT && (
        <>
          <label>Prompt<textarea name="prompt" required rows={3} value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} /></label>
          <details>
            <summary>Options</summary>
            <div class="grid">
              {inp("Model", "model", model, setModel)}
              {inp("Max turns (1–50)", "max_turns", maxTurns, setMaxTurns, { type: "number", min: 1, max: 50 })}
              {inp("Budget (USD)", "budget", budget, setBudget, { type: "number", min: 0, step: "0.01" })}
              {inp("Allowed tools", "allowed_tools", tools, setTools, { placeholder: "Read, Bash" })}
            </div>
            <label>System prompt<textarea name="system_prompt" rows={2} value={systemPrompt} onInput={(e) => setSystemPrompt(e.currentTarget.value)} /></label>
          </details>
        </>
      )}
      {type === TaskType.GIT_OPERATION && (
        <div class="grid">
          <label>Operation<select name="git_operation" value={gitOp} onChange={(e) => setGitOp(Number(e.currentTarget.value))}>
            {[1, 2, 3, 4, 5, 6, 7, 8, 9].map((o) => <option value={o}>{enumName(GitOperationType, o)}</option>)}
          </select></label>
          {inp("URL (clone)", "git_url", gitUrl, setGitUrl)}
          {inp("Ref", "ref", ref, setRef)}
          {inp("Message (commit)", "message", message, setMessage)}
          {inp("Paths", "paths", paths, setPaths)}
        </div>
      )}
      {type === TaskType.DOCKER_BUILD && (
        <div class="grid">
          {inp("Context directory", "context_dir", contextDir, setContextDir)}
          {inp("Dockerfile", "dockerfile", dockerfile, setDockerfile, { placeholder: "Dockerfile" })}
          {inp("Tag", "tag", tag, setTag)}
        </div>
      )}
      <label>Priority<select name="priority" value={priority} onChange={(e) => setPriority(Number(e.currentTarget.value))}>
        {[TaskPriority.LOW, TaskPriority.MEDIUM, TaskPriority.HIGH].map((p) => <option value={p}>{enumName(TaskPriority, p)}</option>)}
      </select></label>
      {error && <p class="error" role="alert">{error}</p>}
      <button type="submit" class="primary" disabled={busy}>{busy ? "Queueing…" : continueTaskId ? "Continue" : "Run task"}</button>
    </form>
  );
}
