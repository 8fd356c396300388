import { useCallback, useEffect, useState } from "react";

import { fetchHistoryEvents, onUnauthorized } from "./api";
import { clearSession, currentToken, loadSession, saveSession, type Session } from "./auth";
import { Link } from "./components/Link";
import { ReconnectBanner } from "./components/ReconnectBanner";
import {
  disableNotifications,
  enableNotifications,
  notificationsEnabled,
  notificationsSupported,
  notifyFinished,
} from "./notifications";
import { JobPage } from "./pages/JobPage";
import { ListsPage } from "./pages/ListsPage";
import { LoginPage } from "./pages/LoginPage";
import { VideosPage } from "./pages/VideosPage";
import { REASON_TOO_MANY_CONNECTIONS } from "./progress/protocol";
import { ProgressProvider, useJobProgress, useProgressHub } from "./progress/useJobProgress";
import { navigate, useRoute, type Route } from "./router";

export function App() {
  const [session, setSession] = useState<Session | null>(loadSession);
  const [notice, setNotice] = useState<string | null>(null);
  const route = useRoute();

  const logout = useCallback((message: string | null = null) => {
    clearSession();
    setSession(null);
    setNotice(message);
    const here = location.pathname;
    navigate(here === "/login" ? "/login" : `/login?next=${encodeURIComponent(here)}`, { replace: true });
  }, []);

  useEffect(() => {
    onUnauthorized(() => logout("Your session has expired. Please log in again."));
    return () => onUnauthorized(null);
  }, [logout]);

  // Log-in / log-out in another tab.
  useEffect(() => {
    const onStorage = () => setSession(loadSession());
    window.addEventListener("storage", onStorage);
    return () => window.removeEventListener("storage", onStorage);
  }, []);

  useEffect(() => {
    if (!session && route.name !== "login") {
      navigate(`/login?next=${encodeURIComponent(location.pathname)}`, { replace: true });
    }
  }, [session, route.name]);

  if (!session || route.name === "login") {
    return (
      <LoginPage
        notice={notice}
        onLogin={(s) => {
          saveSession(s);
          setSession(s);
          setNotice(null);
          const next = new URLSearchParams(location.search).get("next");
          navigate(next && next.startsWith("/") && next !== "/login" ? next : "/lists", { replace: true });
        }}
      />
    );
  }

  return (
    <ProgressProvider
      key={session.user.id}
      userId={session.user.id}
      getToken={currentToken}
      onAuthFailure={() => logout("Your session has expired. Please log in again.")}
      fetchHistory={fetchHistoryEvents}
    >
      <Layout username={session.user.username} onLogout={() => logout(null)}>
        <Page route={route} />
      </Layout>
    </ProgressProvider>
  );
}

function Page({ route }: { route: Route }) {
  switch (route.name) {
    case "list":
      return <VideosPage key={route.id} listId={route.id} />;
    case "job":
      return <JobPage key={route.id} jobId={route.id} />;
    case "notfound":
      return (
        <div className="page">
          <h1>Not found</h1>
          <Link to="/lists">Back to the lists</Link>
        </div>
      );
    default:
      return <ListsPage />;
  }
}

function Layout({ username, onLogout, children }: { username: string; onLogout: () => void; children: React.ReactNode }) {
  const { isConnected, reconnecting, transport, lastUpdateAt, role, refusal, status } = useJobProgress();
  const hub = useProgressHub();
  useEffect(() => hub.onFinished(notifyFinished), [hub]);
  return (
    <>
      <header className="topbar">
        <Link to="/lists" className="brand">
          reeltrack
        </Link>
        <nav>
          <Link to="/lists">Lists</Link>
        </nav>
        <span
          className={`conn conn-${isConnected ? "live" : reconnecting ? "reconnecting" : "offline"}`}
          data-testid="connection-status"
          data-connected={isConnected ? "true" : "false"}
          data-transport={transport ?? ""}
          data-role={role}
          data-status={status}
          title={role === "follower" ? "Live updates shared from another tab" : "This tab holds the live connection"}
        >
          {isConnected ? `Live (${transport ?? "?"})` : reconnecting ? "Reconnecting" : "Offline"}
        </span>
        <NotificationToggle />
        <span className="user">{username}</span>
        <button type="button" className="small" onClick={onLogout}>
          Log out
        </button>
      </header>
      <ReconnectBanner reconnecting={reconnecting} lastUpdateAt={lastUpdateAt} refusedForLoad={refusal === REASON_TOO_MANY_CONNECTIONS} />
      <main>{children}</main>
    </>
  );
}

function NotificationToggle() {
  const [enabled, setEnabled] = useState(notificationsEnabled);
  if (!notificationsSupported()) return null;
  return (
    <label className="notify-toggle">
      <input
        type="checkbox"
        checked={enabled}
        onChange={async (e) => {
          if (e.target.checked) setEnabled(await enableNotifications());
          else {
            disableNotifications();
            setEnabled(false);
          }
        }}
      />{" "}
      Notify me
    </label>
  );
}
