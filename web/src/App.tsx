import { QueryClientProvider, useQueryClient } from "@tanstack/react-query";
import { useCallback, useEffect, useState } from "react";

import { api, fetchHistoryEvents, onUnauthorized } from "./api";
import { clearSession, currentToken, loadSession, saveSession, type Session } from "./auth";
import { Link } from "./components/Link";
import { NotFound } from "./components/NotFound";
import { ReconnectBanner } from "./components/ReconnectBanner";
import { jobName } from "./jobView";
import {
  disableNotifications,
  enableNotifications,
  notificationsEnabled,
  notificationsSupported,
  notifyFinished,
} from "./notifications";
import { JobPage } from "./pages/JobPage";
import { JobsPage } from "./pages/JobsPage";
import { ListsPage } from "./pages/ListsPage";
import { LoginPage } from "./pages/LoginPage";
import { VideosPage } from "./pages/VideosPage";
import { REASON_TOO_MANY_CONNECTIONS } from "./progress/protocol";
import { ProgressProvider, useJobProgress, useProgressHub } from "./progress/useJobProgress";
import { createQueryClient, keys, useLiveInvalidation } from "./queries";
import { navigate, useRoute, type Route } from "./router";

export function App() {
  const [session, setSession] = useState<Session | null>(loadSession);
  const [notice, setNotice] = useState<string | null>(null);
  const [queryClient] = useState(createQueryClient);
  const route = useRoute();

  const logout = useCallback(
    (message: string | null = null) => {
      clearSession();
      queryClient.clear();
      setSession(null);
      setNotice(message);
      const here = location.pathname;
      // already on the login page (a second refusal, e.g. the socket's after a REST 401):
      // stay, keeping the ?next= the first one set
      if (here !== "/login") navigate(`/login?next=${encodeURIComponent(here)}`, { replace: true });
    },
    [queryClient],
  );

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
          navigate(next && next.startsWith("/") && next !== "/login" ? next : "/jobs", { replace: true });
        }}
      />
    );
  }

  return (
    <QueryClientProvider client={queryClient}>
      <ProgressProvider
        key={session.user.id}
        userId={session.user.id}
        getToken={currentToken}
        onAuthFailure={() => logout("Your session has expired. Please log in again.")}
        fetchHistory={fetchHistoryEvents}
      >
        <Layout username={session.user.username} onLogout={() => logout(null)} route={route}>
          <Page route={route} />
        </Layout>
      </ProgressProvider>
    </QueryClientProvider>
  );
}

function Page({ route }: { route: Route }) {
  switch (route.name) {
    case "list":
      return <VideosPage key={route.id} listId={route.id} />;
    case "job":
      return <JobPage key={route.id} jobId={route.id} />;
    case "lists":
      return <ListsPage />;
    case "notfound":
      return <NotFound title="Not found" text="There is no page at this address." back={{ to: "/jobs", label: "All jobs" }} />;
    default:
      return <JobsPage />;
  }
}

function Layout({
  username,
  onLogout,
  route,
  children,
}: {
  username: string;
  onLogout: () => void;
  route: Route;
  children: React.ReactNode;
}) {
  const { isConnected, reconnecting, transport, lastUpdateAt, role, refusal, status } = useJobProgress();
  const hub = useProgressHub();
  const client = useQueryClient();
  useLiveInvalidation();
  // A finished job's notification names it and its list (read over REST once).
  useEffect(
    () =>
      hub.onFinished((job) => {
        client
          .fetchQuery({ queryKey: keys.job(job.job_id), queryFn: () => api.job(job.job_id), staleTime: 0 })
          .then(
            (info) => notifyFinished(job, { name: jobName(info, job.job_id), listName: info.list_name ?? null }, navigate),
            () => notifyFinished(job, { name: jobName(undefined, job.job_id), listName: null }, navigate),
          );
      }),
    [hub, client],
  );
  const section = route.name === "lists" || route.name === "list" ? "lists" : "jobs";
  return (
    <>
      <header className="topbar">
        <Link to="/jobs" className="brand">
          reeltrack
        </Link>
        <nav aria-label="Main">
          <Link to="/jobs" className={section === "jobs" ? "current" : undefined} current={section === "jobs"}>
            Jobs
          </Link>
          <Link to="/lists" className={section === "lists" ? "current" : undefined} current={section === "lists"}>
            Lists
          </Link>
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
          {isConnected ? "Live" : reconnecting ? "Reconnecting" : "Offline"}
        </span>
        <NotificationToggle />
        <span className="user" title={username}>
          {username}
        </span>
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
