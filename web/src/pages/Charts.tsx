// Charts: the caller's task counts by status (global for admins) as bars.
import { useEffect, useState } from "preact/hooks";
import { describe, stats } from "../api";
import type { GetStatsResponse } from "../gen/berth/v1/stats_pb";

export function Charts({ isAdmin }: { isAdmin: boolean }) {
  const [s, setS] = useState<GetStatsResponse | undefined>();
  const [error, setError] = useState("");
  useEffect(() => { stats.getStats({ global: isAdmin }).then(setS, (e) => setError(describe(e))); }, [isAdmin]);
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!s) return <p role="status">Loading…</p>;
  const entries = Object.entries(s.tasksByStatus);
  const max = Math.max(1, ...entries.map(([, v]) => Number(v)));
  return (
    <section>
      <h1>Charts</h1>
      <h2>Tasks by status {s.global ? "(all users)" : "(yours)"}</h2>
      <div class="bars" role="img" aria-label={entries.map(([k, v]) => `${v} ${k}`).join(", ") || "no tasks"}>
        {entries.map(([k, v]) => (
          <div class="bar"><span class="lbl">{k}</span><span class={`fill t-${k}`} style={{ width: `${(Number(v) / max) * 100}%` }} /><span>{String(v)}</span></div>
        ))}
      </div>
      <p>Agent cost so far: ${s.totalCostUsd.toFixed(4)}</p>
    </section>
  );
}
