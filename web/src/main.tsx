// The berth web console: a single-page app over Connect-Web. Pages live in
// pages/; the session is the HttpOnly berth_session cookie, so this file
// only asks the server who is signed in and never stores a credential.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import { auth, describe, isCode, onSignedOut } from "./api";
import { link, navigate, usePath } from "./router";
import { type User } from "./gen/berth/v1/auth_pb";
import { Role } from "./gen/berth/v1/common_pb";
import { Login } from "./pages/Login";
import { WorkspaceList } from "./pages/WorkspaceList";
import { WorkspacePage } from "./pages/WorkspacePage";
import { TaskPage } from "./pages/TaskPage";
import { Account } from "./pages/Account";
import { Admin } from "./pages/Admin";
import { Charts } from "./pages/Charts";
import "./style.css";

function App() {
  const path = usePath();
  const [user, setUser] = useState<User | null | undefined>(undefined);
  const [notice, setNotice] = useState("");

  useEffect(() => {
    onSignedOut((why) => {
      setUser((u) => {
        if (u) setNotice(`You were signed out: ${why}`);
        return null;
      });
    });
    auth.getCurrentUser({}).then(
      (r) => setUser(r.user ?? null),
      (e) => {
        if (!isCode(e, Code.Unauthenticated)) setNotice(describe(e));
        setUser(null);
      },
    );
  }, []);

  // An open tab learns of a session ended elsewhere (signed out, disabled
  // by an admin) within a few seconds even when idle.
  useEffect(() => {
    if (!user) return;
    const t = setInterval(() => {
      auth.getCurrentUser({}).catch(() => {});
    }, 3000);
    return () => clearInterval(t);
  }, [user]);

  useEffect(() => {
    if (user === null && path !== "/login") navigate("/login", true);
    if (user && (path === "/login" || path === "/")) navigate("/workspaces", true);
  }, [user, path]);

  if (user === undefined) return <p class="loading" role="status">Loading…</p>;
  if (user === null) {
    return (
      <main id="main" class="narrow">
        {notice && <p class="notice" role="alert">{notice}</p>}
        <Login onSignedIn={(u) => { setNotice(""); setUser(u); }} />
      </main>
    );
  }

  const signOut = async () => {
    try {
      await auth.logout({});
    } catch (e) {
      if (!isCode(e, Code.Unauthenticated)) setNotice(describe(e));
    }
    setUser(null);
  };
  const isAdmin = user.role === Role.ADMIN;
  let page;
  let m: RegExpMatchArray | null;
  if ((m = path.match(/^\/workspaces\/([^/]+)$/))) page = <WorkspacePage id={m[1]} user={user} />;
  else if ((m = path.match(/^\/tasks\/([^/]+)$/))) page = <TaskPage id={m[1]} />;
  else if (path === "/account") page = <Account user={user} />;
  else if (path === "/admin" && isAdmin) page = <Admin self={user} />;
  else if (path === "/charts") page = <Charts isAdmin={isAdmin} />;
  else page = <WorkspaceList user={user} />;

  const nav = (href: string, label: string) => (
    <a href={href} onClick={link} aria-current={path.startsWith(href) ? "page" : undefined}>{label}</a>
  );
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <a class="brand" href="/workspaces" onClick={link}>berth</a>
        <nav aria-label="Main">
          {nav("/workspaces", "Workspaces")}
          {nav("/charts", "Charts")}
          {nav("/account", "Account")}
          {isAdmin && nav("/admin", "Admin")}
        </nav>
        <span class="who" data-testid="who">{user.email || user.name}</span>
        <button type="button" onClick={signOut}>Sign out</button>
      </header>
      {notice && <p class="notice" role="alert">{notice}</p>}
      <main id="main">{page}</main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
