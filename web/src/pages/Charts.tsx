// Charts: tasks by status over time and agent cost per bucket, for the
// caller's workspaces or (admins) the whole server, optionally split per
// user or per workspace — from StatsService.GetStatsSeries, drawn with
// uPlot. Each chart has its numbers as a table too, for screen readers and
// for people who would rather read.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, stats } from "../api";
import { StatsBucket, StatsGroup, type GetStatsResponse, type StatsPoint } from "../gen/berth/v1/stats_pb";

const statuses = ["succeeded", "failed", "cancelled", "timed_out", "running", "queued"];
const palette = ["#1a7f37", "#cf222e", "#6e7781", "#bc4c00", "#0969da", "#8250df", "#1b7c83", "#9a6700", "#bf3989", "#57606a"];
const ranges = [
  { id: "24h", label: "Last 24 hours, by hour", bucket: StatsBucket.HOUR, seconds: 3600, count: 24 },
  { id: "7d", label: "Last 7 days, by hour", bucket: StatsBucket.HOUR, seconds: 3600, count: 24 * 7 },
  { id: "30d", label: "Last 30 days, by day", bucket: StatsBucket.DAY, seconds: 86400, count: 30 },
  { id: "365d", label: "Last year, by day", bucket: StatsBucket.DAY, seconds: 86400, count: 365 },
];

interface Series { label: string; values: number[] }
interface Chart { xs: number[]; series: Series[] }

export function Charts({ isAdmin }: { isAdmin: boolean }) {
  const [rangeId, setRangeId] = useState("30d");
  const [group, setGroup] = useState(StatsGroup.UNSPECIFIED);
  const [global, setGlobal] = useState(isAdmin);
  const [points, setPoints] = useState<StatsPoint[] | undefined>();
  const [totals, setTotals] = useState<GetStatsResponse | undefined>();
  const [error, setError] = useState("");
  const range = ranges.find((r) => r.id === rangeId)!;

  // Bucket starts of the range, UTC, oldest first (empty buckets are zeros).
  const xs = useMemo(() => {
    const now = Math.floor(Date.now() / 1000);
    const last = now - (now % range.seconds);
    return Array.from({ length: range.count }, (_, i) => last - (range.count - 1 - i) * range.seconds);
  }, [rangeId, points]);

  useEffect(() => {
    const ctl = new AbortController();
    setError("");
    stats.getStatsSeries({ global, bucket: range.bucket, group, start: timestampFromDate(new Date(xs[0] * 1000)) }, { signal: ctl.signal }).then(
      (r) => setPoints(r.points),
      (e) => { if (!ctl.signal.aborted) setError(describe(e)); },
    );
    stats.getStats({ global }, { signal: ctl.signal }).then(setTotals, () => {});
    return () => ctl.abort();
  }, [rangeId, group, global]);

  const [byStatus, cost] = useMemo((): [Chart, Chart] => {
    const index = new Map(xs.map((x, i) => [x, i]));
    const at = (p: StatsPoint) => index.get(Math.floor(timestampDate(p.bucketStart!).getTime() / 1000));
    const zeros = () => xs.map(() => 0);
    if (group === StatsGroup.UNSPECIFIED) {
      const s = statuses.map((st) => ({ label: st.replace("_", " "), values: zeros() }));
      const c = { label: "cost (USD)", values: zeros() };
      for (const p of points ?? []) {
        const i = at(p);
        if (i === undefined) continue;
        statuses.forEach((st, k) => { s[k].values[i] += Number(p.tasksByStatus[st] ?? 0n); });
        c.values[i] += p.costUsd;
      }
      return [{ xs, series: s.filter((x) => x.values.some((v) => v > 0)) }, { xs, series: [c] }];
    }
    const groups = new Map<string, { tasks: Series; cost: Series }>();
    for (const p of points ?? []) {
      const i = at(p);
      if (i === undefined) continue;
      const key = p.group || "(deleted)";
      if (!groups.has(key)) groups.set(key, { tasks: { label: p.groupName || key.slice(0, 8), values: zeros() }, cost: { label: p.groupName || key.slice(0, 8), values: zeros() } });
      const g = groups.get(key)!;
      g.tasks.values[i] += Object.values(p.tasksByStatus).reduce((a, b) => a + Number(b), 0);
      g.cost.values[i] += p.costUsd;
    }
    const gs = [...groups.values()];
    return [{ xs, series: gs.map((g) => g.tasks) }, { xs, series: gs.map((g) => g.cost) }];
  }, [points, xs, group]);

  const split = group === StatsGroup.UNSPECIFIED ? "" : group === StatsGroup.USER ? " per user" : " per workspace";
  return (
    <section>
      <h1>Charts</h1>
      <div class="filters">
        <label>Range<select value={rangeId} onChange={(e) => setRangeId(e.currentTarget.value)}>
          {ranges.map((r) => <option value={r.id}>{r.label}</option>)}
        </select></label>
        <label>Split<select value={group} onChange={(e) => setGroup(Number(e.currentTarget.value))}>
          <option value={StatsGroup.UNSPECIFIED}>none</option>
          <option value={StatsGroup.USER}>per user</option>
          <option value={StatsGroup.WORKSPACE}>per workspace</option>
        </select></label>
        {isAdmin && <label>Scope<select value={global ? "all" : "mine"} onChange={(e) => setGlobal(e.currentTarget.value === "all")}>
          <option value="all">whole server</option>
          <option value="mine">my workspaces</option>
        </select></label>}
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {totals && (
        <p data-testid="totals">{String(totals.tasks)} tasks in all ({Object.entries(totals.tasksByStatus).map(([k, v]) => `${v} ${k.replace("_", " ")}`).join(", ") || "none"}), agent cost ${totals.totalCostUsd.toFixed(4)}{totals.global ? ", whole server" : ", your workspaces"}.</p>
      )}
      {points === undefined ? <p role="status">Loading…</p> : (
        <>
          <h2>{group === StatsGroup.UNSPECIFIED ? "Tasks by status" : "Tasks"}{split}</h2>
          <Plot chart={byStatus} kind="tasks" hourly={range.bucket === StatsBucket.HOUR} />
          <h2>Agent cost{split} (USD)</h2>
          <Plot chart={cost} kind="cost" hourly={range.bucket === StatsBucket.HOUR} />
        </>
      )}
    </section>
  );
}

function Plot({ chart, kind, hourly }: { chart: Chart; kind: "tasks" | "cost"; hourly: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const fmt = (v: number) => (kind === "cost" ? `$${v.toFixed(4)}` : String(v));
  useEffect(() => {
    const el = box.current;
    if (!el || chart.series.length === 0) return;
    const bars = uPlot.paths.bars!({ size: [0.8, 40] });
    // Task counts are stacked: each series is drawn as the running sum of
    // itself and those before it, the tallest first so each shows in front
    // of the next; the legend still reads each series' own value.
    const stacked = kind === "tasks" && chart.series.length > 1;
    let shown = chart.series.map((s) => ({ ...s, color: palette[chart.series.indexOf(s) % palette.length], raw: s.values }));
    if (stacked) {
      let sum = chart.xs.map(() => 0);
      shown = shown.map((s) => { sum = sum.map((v, i) => v + s.values[i]); return { ...s, values: sum }; }).reverse();
    }
    const u = new uPlot({
      width: Math.max(280, el.clientWidth),
      height: 260,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(kind === "cost" ? 0.01 : 1, max)] } },
      axes: [{}, { values: (_u, vals) => vals.map((v) => (kind === "cost" ? `$${v.toFixed(2)}` : String(v))) }],
      series: [
        { value: (_u, v) => (v == null ? "" : new Date(v * 1000).toLocaleString(undefined, hourly ? {} : { dateStyle: "medium" })) },
        ...shown.map((s) => ({
          label: s.label,
          stroke: s.color,
          fill: stacked ? s.color + "cc" : s.color + "55",
          width: 1,
          paths: chart.series.length === 1 || kind === "tasks" ? bars : undefined,
          value: (_u: uPlot, v: number | null, _si: number, i: number | null) => (v == null || i == null ? "" : fmt(s.raw[i])),
        })),
      ],
    }, [chart.xs, ...shown.map((s) => s.values)], el);
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(280, el.clientWidth), height: 260 }));
    ro.observe(el);
    return () => { ro.disconnect(); u.destroy(); };
  }, [chart]);
  const nonEmpty = chart.xs.map((x, i) => [x, i] as const).filter(([, i]) => chart.series.some((s) => s.values[i] > 0));
  const summary = chart.series.map((s) => `${s.label}: ${fmt(s.values.reduce((a, b) => a + b, 0))}`).join(", ");
  if (chart.series.length === 0 || nonEmpty.length === 0) return <p class="muted">No tasks in this range.</p>;
  return (
    <figure class="chart">
      <div ref={box} role="img" aria-label={`${kind === "cost" ? "Agent cost" : "Tasks"} over time; totals ${summary}`} data-testid={`chart-${kind}`} />
      <details>
        <summary>Show the numbers</summary>
        <table class="list">
          <thead><tr><th scope="col">{hourly ? "Hour" : "Day"}</th>{chart.series.map((s) => <th scope="col">{s.label}</th>)}</tr></thead>
          <tbody>
            {nonEmpty.map(([x, i]) => (
              <tr><td>{new Date(x * 1000).toLocaleString(undefined, hourly ? {} : { dateStyle: "medium" })}</td>{chart.series.map((s) => <td>{fmt(s.values[i])}</td>)}</tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}
