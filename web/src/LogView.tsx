// A virtualised task log: only the rows in view (plus a margin) are in the
// DOM, so 10,000+ lines scroll as smoothly as 10. Rows have one fixed
// height; a row opens its full text and fields below the list.
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import { LogLevel, LogSource, type LogEntry } from "./gen/berth/v1/task_pb";

const ROW = 22; // px, matches .logrow in style.css
const MARGIN = 20; // rows rendered beyond the viewport on each side

export function kindOf(e: LogEntry): string {
  switch (e.source) {
    case LogSource.ASSISTANT:
      return e.level === LogLevel.DEBUG ? "thinking" : "assistant";
    case LogSource.TOOL:
      return e.fields && "tool_use_id" in e.fields ? (e.fields.is_error ? "tool-error" : "tool-result") : "tool-call";
    case LogSource.STDERR:
      return "stderr";
    case LogSource.SYSTEM:
      return "system";
    default:
      return "stdout";
  }
}

const labels: Record<string, string> = {
  thinking: "thinking", assistant: "assistant", "tool-call": "tool →", "tool-result": "← result",
  "tool-error": "← error", stderr: "stderr", system: "system", stdout: "stdout",
};

function text(e: LogEntry, kind: string): string {
  if (kind === "thinking") return "(thinking — select to expand)";
  return e.message.split("\n", 1)[0];
}

export function LogView({ lines, version }: { lines: LogEntry[]; version: number }) {
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(480);
  const [follow, setFollow] = useState(true);
  const [open, setOpen] = useState<LogEntry | null>(null);

  useLayoutEffect(() => {
    const el = box.current!;
    setHeight(el.clientHeight || 480);
    if (follow) {
      el.scrollTop = el.scrollHeight;
      setTop(el.scrollTop);
    }
  }, [version, follow]);

  const onScroll = () => {
    const el = box.current!;
    setTop(el.scrollTop);
    setFollow(el.scrollTop + el.clientHeight >= el.scrollHeight - ROW * 2);
  };

  const first = Math.max(0, Math.floor(top / ROW) - MARGIN);
  const last = Math.min(lines.length, Math.ceil((top + height) / ROW) + MARGIN);
  const rows = [];
  for (let i = first; i < last; i++) {
    const e = lines[i];
    const kind = kindOf(e);
    rows.push(
      <button type="button" key={String(e.seq)} class={`logrow k-${kind}${open === e ? " sel" : ""}`} data-seq={String(e.seq)}
        style={{ top: `${i * ROW}px` }} onClick={() => setOpen(open === e ? null : e)} aria-expanded={open === e}>
        <span class="seq">{String(e.seq)}</span>
        <span class="src">{labels[kind]}</span>
        <span class="msg">{text(e, kind)}</span>
      </button>,
    );
  }
  return (
    <>
      <div class="logbox" ref={box} onScroll={onScroll} role="log" aria-label="Task log" tabIndex={0}
        data-count={lines.length} data-last-seq={lines.length ? String(lines[lines.length - 1].seq) : "0"}>
        <div class="logspace" style={{ height: `${lines.length * ROW}px` }}>{rows}</div>
      </div>
      <div class="logfoot">
        <span>{lines.length} lines</span>
        {!follow && <button type="button" onClick={() => setFollow(true)}>Follow the end</button>}
      </div>
      {open && (
        <section class="card logdetail" aria-label={`Log line ${open.seq}`}>
          <h3>Line {String(open.seq)} · {labels[kindOf(open)]}</h3>
          <pre>{open.message}</pre>
          {open.fields && Object.keys(open.fields).length > 0 && <pre class="muted">{JSON.stringify(open.fields, null, 2)}</pre>}
        </section>
      )}
    </>
  );
}
