/**
 * All the user's jobs: the active ones live at the top, then the finished ones newest
 * first, one page at a time. Seeded from REST (so a job never drops out because the
 * socket's snapshot window passed), kept live by the socket.
 */
import { useEffect, useMemo, useState } from "react";

import type { JobsFilter } from "../api";
import { JobCard } from "../components/JobCard";
import { cancelSummary, describeError, jobView, plural, type JobView } from "../jobView";
import { useJobProgress } from "../progress/useJobProgress";
import { useJobActions, useJobsListing, useLists } from "../queries";
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

/** The active jobs the user ticked, and the one action on all of them: cancel. */
function useSelection(views: JobView[]) {
  const [picked, setPicked] = useState<ReadonlySet<string>>(new Set());
  // a job that finished (or left the filter) is no longer selected
  const selected = views.filter((v) => picked.has(v.id)).map((v) => v.id);
  const toggle = (id: string, on: boolean) =>
    setPicked((old) => {
      const next = new Set(old);
      if (on) next.add(id);
      else next.delete(id);
      return next;
    });
  const setAll = (on: boolean) => setPicked(on ? new Set(views.map((v) => v.id)) : new Set());
  return { selected, toggle, setAll, clear: () => setPicked(new Set()) };
}

type Selection = ReturnType<typeof useSelection>;

/** Select all / Cancel selected (n), with the outcome of the last cancel as a sentence. */
function SelectionBar({ views, selection }: { views: JobView[]; selection: Selection }) {
  const { cancelMany } = useJobActions();
  const [outcome, setOutcome] = useState<{ text: string; error: boolean } | null>(null);
  const n = selection.selected.length;
  const all = n > 0 && n === views.length;
  const cancelSelected = async () => {
    if (!window.confirm(`Cancel ${plural(n, "job")}? Running ones stop before their next video.`)) return;
    setOutcome(null);
    try {
      const results = await cancelMany.mutateAsync(selection.selected);
      selection.clear();
      setOutcome({ text: cancelSummary(results), error: false });
    } catch (e) {
      setOutcome({ text: describeError(e), error: true });
    }
  };
  return (
    <div className="selection-bar" data-testid="selection-bar">
      <label>
        <input type="checkbox" checked={all} onChange={(e) => selection.setAll(e.target.checked)} />
        Select all
      </label>
      <button type="button" className="small" disabled={n === 0 || cancelMany.isPending} onClick={() => void cancelSelected()}>
        Cancel selected ({n})
      </button>
      {outcome && (
        <span className={outcome.error ? "error-text" : "ok-text"} role="status" data-testid="selection-outcome">
          {outcome.text}
        </span>
      )}
    </div>
  );
}

/** A titled list of job cards (``empty`` when there is none) and a button for the listing's next page. */
function JobSection({
  id,
  title,
  views,
  empty,
  listing,
  more,
  selection,
}: {
  id: string;
  title: string;
  views: JobView[];
  empty: string;
  listing: { hasNextPage: boolean; isFetchingNextPage: boolean; fetchNextPage: () => unknown };
  more: string;
  selection?: Selection;
}) {
  return (
    <section aria-labelledby={id} data-testid={id}>
      <h2 id={id}>{title}</h2>
      {selection && views.length > 0 && <SelectionBar views={views} selection={selection} />}
      {views.length === 0 ? (
        <p className="muted">{empty}</p>
      ) : (
        <ul className="job-list">
          {views.map((v) => (
            <JobCard
              key={v.id}
              view={v}
              selection={selection && { selected: selection.selected.includes(v.id), onToggle: selection.toggle }}
            />
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

  const selection = useSelection(activeViews);
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
          selection={selection}
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
