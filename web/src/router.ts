/**
 * A tiny history-API router: /login, / and /jobs (all jobs), /lists, /lists/:id, /jobs/:id. Quart serves
 * index.html for every non-API path, so a reload on any of them lands here.
 */
import { useEffect, useState } from "react";

export type Route =
  | { name: "login" }
  | { name: "jobs" }
  | { name: "lists" }
  | { name: "list"; id: string }
  | { name: "job"; id: string }
  | { name: "notfound"; path: string };

export function parseRoute(pathname: string): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/login") return { name: "login" };
  if (path === "/" || path === "/jobs") return { name: "jobs" };
  if (path === "/lists") return { name: "lists" };
  let m = /^\/lists\/([^/]+)$/.exec(path);
  if (m) return { name: "list", id: decodeURIComponent(m[1]) };
  m = /^\/jobs\/([^/]+)$/.exec(path);
  if (m) return { name: "job", id: decodeURIComponent(m[1]) };
  return { name: "notfound", path };
}

const NAV_EVENT = "reeltrack:navigate";

/** Keep the debugging/transport override (`?transport=`) across in-app navigation. */
function carriedSearch(): string {
  const current = new URLSearchParams(location.search);
  const keep = new URLSearchParams();
  const transport = current.get("transport");
  if (transport) keep.set("transport", transport);
  const text = keep.toString();
  return text ? `?${text}` : "";
}

export function navigate(path: string, options: { replace?: boolean } = {}): void {
  const [pathname, query] = path.split("?");
  const search = query ? `?${query}` : carriedSearch();
  const url = `${pathname}${search}`;
  if (options.replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.dispatchEvent(new Event(NAV_EVENT));
}

export function useRoute(): Route {
  const [route, setRoute] = useState<Route>(() => parseRoute(location.pathname));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location.pathname));
    window.addEventListener("popstate", update);
    window.addEventListener(NAV_EVENT, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(NAV_EVENT, update);
    };
  }, []);
  return route;
}

/** An <a> that navigates without a page load (still a real link for new tabs). */
export function linkHandler(path: string) {
  return (event: { preventDefault(): void; button?: number; metaKey?: boolean; ctrlKey?: boolean; shiftKey?: boolean }) => {
    if (event.button !== undefined && event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    navigate(path);
  };
}
