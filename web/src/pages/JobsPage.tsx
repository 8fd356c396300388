/**
 * All the user's jobs: the active ones live at the top, then the finished ones newest
 * first, one page at a time. Seeded from REST (so a job never drops out because the
 * socket's snapshot window passed), kept live by the socket.
 */
import { useEffect, useMemo, useState } from "react";

import type { JobsFilter } from "../api";
import { JobCard } from "../components/JobCard";
import { describeError, jobView, type JobView } from "../jobView";
import { useJobProgress } from "../progress/useJobProgress";
import { useJobsListing, useLists } from "../queries";
import { isFinalStatus, type Job } from "../types";

const STATUS_OPTIONS: [JobsFilter | "", string][] = [
  ["", "All"],
  ["active", "Active"],
  ["completed", "Completed"],
  ["failed", "Failed"],
  ["cancelled", "Cancelled"],
];

interface Filters {
  status: JobsFilter | "";
  list: string;
  q: string;
}

function readFilters(): Filters {
  const p = new URLSearchParams(location.search);
  const status = p.get("status") ?? "";
  return {
    status: STATUS_OPTIONS.some(([v]) => v === status) ? (status as JobsFilter | "") : "",
    list: p.get("list") ?? "",
    q: p.get("q") ?? "",
  };
}

/** The filters in the address, so a reload or a shared link shows the same jobs. */
function writeFilters(f: Filters): void {
  const p = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(f)) {
    if (value) p.set(key, value);
    else p.delete(key);
  }
  const search = p.toString();
  history.replaceState(history.state, "", `${location.pathname}${search ? `?${search}` : ""}`);
}

function useDebounced<T>(value: T, ms: number): T {
  const [current, setCurrent] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setCurrent(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return current;
}

function byNewest(a: JobView, b: JobView): number {
  return (b.createdAt ?? "").localeCompare(a.createdAt ?? "");
}

/** A titled list of job cards (``empty`` when there is none) and a button for the listing's next page. */
function JobSection({
  id,
  title,
  views,
  empty,
  listing,
  more,
}: {
  id: string;
  title: string;
  views: JobView[];
  empty: string;
  listing: { hasNextPage: boolean; isFetchingNextPage: boolean; fetchNextPage: () => unknown };
  more: string;
}) {
  return (
    <section aria-labelledby={id} data-testid={id}>
      <h2 id={id}>{title}</h2>
      {views.length === 0 ? (
        <p className="muted">{empty}</p>
      ) : (
        <ul className="job-list">
          {views.map((v) => (
            <JobCard key={v.id} view={v} />
          ))}
        </ul>
      )}
      {listing.hasNextPage && (
        <button type="button" disabled={listing.isFetchingNextPage} onClick={() => void listing.fetchNextPage()}>
          {more}
        </button>
      )}
    </section>
  );
}

export function JobsPage() {
  const [filters, setFilters] = useState<Filters>(readFilters);
  const q = useDebounced(filters.q.trim(), 250);
  useEffect(() => writeFilters(filters), [filters]);
  const update = (patch: Partial<Filters>) => setFilters((f) => ({ ...f, ...patch }));

  const lists = useLists();
  const { jobProgress } = useJobProgress();
  const common = { list_id: filters.list || null, q: q || null };
  const showActive = filters.status === "" || filters.status === "active";
  const showFinished = filters.status !== "active";
  const active = useJobsListing({ ...common, status: "active" }, showActive);
  const finished = useJobsListing({ ...common, status: filters.status === "" ? "finished" : filters.status }, showFinished);

  const { activeViews, finishedViews } = useMemo(() => {
    const jobs = new Map<string, Job>();
    const add = (items: Job[] | undefined) => items?.forEach((j) => jobs.set(j.id, j));
    if (showActive) active.data?.pages.forEach((p) => add(p.items));
    if (showFinished) finished.data?.pages.forEach((p) => add(p.items));
    const views = [...jobs.values()].map((j) => jobView(j.id, j, jobProgress.get(j.id)));
    const wanted = (v: JobView) => filters.status === "" || filters.status === "active" || v.status === filters.status;
    return {
      activeViews: views.filter((v) => !isFinalStatus(v.status)).sort(byNewest),
      finishedViews: views.filter((v) => isFinalStatus(v.status) && wanted(v)).sort(byNewest),
    };
  }, [active.data, finished.data, jobProgress, showActive, showFinished, filters.status]);

  const error = (showActive && active.error) || (showFinished && finished.error) || null;
  const loading = (showActive && active.isPending) || (showFinished && finished.isPending);
  const filtered = Boolean(filters.list || q || filters.status);

  return (
    <div className="page">
      <h1>Jobs</h1>
      <form className="filters" role="search" aria-label="Filter jobs" onSubmit={(e) => e.preventDefault()}>
        <label>
          Status
          <select value={filters.status} onChange={(e) => update({ status: e.target.value as Filters["status"] })}>
            {STATUS_OPTIONS.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label>
          List
          <select value={filters.list} onChange={(e) => update({ list: e.target.value })}>
            <option value="">All lists</option>
            {lists.data?.map((l) => (
              <option key={l.id} value={l.id}>
                {l.name}
              </option>
            ))}
          </select>
        </label>
        <label className="grow">
          Search
          <input type="search" placeholder="Job or list name" value={filters.q} onChange={(e) => update({ q: e.target.value })} />
        </label>
      </form>
      {error && (
        <p className="error-text" data-testid="page-error">
          {describeError(error)}
        </p>
      )}
      {showActive && (
        <JobSection
          id="active-jobs"
          title="Active"
          views={activeViews}
          empty={loading ? "Loading..." : "No job is running."}
          listing={active}
          more="More active jobs"
        />
      )}
      {showFinished && (
        <JobSection
          id="finished-jobs"
          title={filters.status === "" ? "Finished" : (STATUS_OPTIONS.find(([v]) => v === filters.status)?.[1] ?? "")}
          views={finishedViews}
          empty={loading ? "Loading..." : filtered ? "No job matches these filters." : "No finished job yet."}
          listing={finished}
          more={finished.isFetchingNextPage ? "Loading..." : "Load more"}
        />
      )}
    </div>
  );
}
