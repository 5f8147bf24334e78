// The console's connection to berth: one Connect transport (the Connect
// protocol over fetch, same origin, so the browser sends the HttpOnly
// berth_session cookie and no script ever holds a credential) and the
// generated clients of every service.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { AuthService } from "./gen/berth/v1/auth_pb";
import { WorkspaceService } from "./gen/berth/v1/workspace_pb";
import { TaskService } from "./gen/berth/v1/task_pb";
import { StatsService } from "./gen/berth/v1/stats_pb";
import { AdminService } from "./gen/berth/v1/admin_pb";

let signedOut: (why: string) => void = () => {};

/** onSignedOut registers what to do when the server no longer knows the session. */
export function onSignedOut(f: (why: string) => void) {
  signedOut = f;
}

// Any call the server refuses as unauthenticated means the session ended
// (signed out elsewhere, expired, or the account was disabled): the app
// returns to the sign-in page. Login itself is exempt (a wrong password).
const sessionWatch: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (e) {
    const err = ConnectError.from(e);
    if (err.code === Code.Unauthenticated && req.method.name !== "Login" && req.method.name !== "Register") {
      signedOut(err.rawMessage);
    }
    throw e;
  }
};

const transport = createConnectTransport({
  baseUrl: location.origin,
  interceptors: [sessionWatch],
  fetch: (input, init) => globalThis.fetch(input, { ...init, credentials: "same-origin" }),
});

export const auth = createClient(AuthService, transport);
export const workspaces = createClient(WorkspaceService, transport);
export const tasks = createClient(TaskService, transport);
export const stats = createClient(StatsService, transport);
export const admin = createClient(AdminService, transport);

/** describe is an error as a person should read it: the server's message and its request id. */
export function describe(e: unknown): string {
  if (e instanceof DOMException && e.name === "AbortError") return "cancelled";
  const err = ConnectError.from(e);
  const id = err.metadata.get("x-request-id");
  const code = Code[err.code]?.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase() ?? "error";
  return `${err.rawMessage || code} (${code}${id ? `, request id ${id}` : ""})`;
}

export function isCode(e: unknown, code: Code): boolean {
  return ConnectError.from(e).code === code;
}

export function when(ts?: Timestamp): string {
  if (!ts) return "—";
  return timestampDate(ts).toLocaleString();
}

export function ago(ts?: Timestamp): string {
  if (!ts) return "—";
  const s = Math.round((Date.now() - timestampDate(ts).getTime()) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return timestampDate(ts).toLocaleDateString();
}

/** enumName turns WORKSPACE_STATUS_RUNNING-style enum members into "running". */
export function enumName(e: Record<number, string>, v: number, prefixLen = 0): string {
  const n = e[v] ?? String(v);
  return n.slice(prefixLen).toLowerCase().replace(/_/g, " ");
}
