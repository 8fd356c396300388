/** A list: its jobs (live), the import form, and its videos newest first, filterable and paged. */
import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useMemo, useRef, useState } from "react";

import { ApiError } from "../api";
import { ImportPanel } from "../components/ImportPanel";
import { JobCard } from "../components/JobCard";
import { Link } from "../components/Link";
import { NotFound } from "../components/NotFound";
import { VideoTable } from "../components/VideoTable";
import { describeError, jobView } from "../jobView";
import { useJobProgress } from "../progress/useJobProgress";
import { keys, refreshInBackground, useJobsListing, useList, useVideos } from "../queries";
import type { VideoStatus } from "../types";

/** How often the video table may be re-read while this list's jobs report progress. */
const VIDEO_REFRESH_MS = 300;

const VIDEO_FILTERS: [VideoStatus | "", string][] = [
  ["", "All"],
  ["pending", "Pending"],
  ["processing", "Processing"],
  ["ready", "Ready"],
  ["failed", "Failed"],
  ["cancelled", "Cancelled"],
];

export function VideosPage({ listId }: { listId: string }) {
  const client = useQueryClient();
  const list = useList(listId);
  const missing = list.error instanceof ApiError && list.error.status === 404;
  const [status, setStatus] = useState<VideoStatus | "">("");
  const videos = useVideos(listId, status || null, !missing);
  const jobs = useJobsListing({ list_id: listId }, !missing);
  const { jobProgress } = useJobProgress();

  const rows = useMemo(() => videos.data?.pages.flatMap((p) => p.items) ?? [], [videos.data]);
  // job id -> its most recently processed failed video: the error a card shows when it
  // only saw the job's final event (after a reload)
  const failures = useMemo(() => {
    const out = new Map<string, { title: string | null; error: string; at: string }>();
    for (const v of rows) {
      if (v.status !== "failed" || !v.error || !v.job_id) continue;
      const at = v.processed_at ?? "";
      const known = out.get(v.job_id);
      if (!known || at >= known.at) out.set(v.job_id, { title: v.title, error: v.error, at });
    }
    return out;
  }, [rows]);
  const views = useMemo(
    () =>
      (jobs.data?.pages.flatMap((p) => p.items) ?? [])
        .map((j) => {
          const view = jobView(j.id, j, jobProgress.get(j.id));
          const failure = view.error || view.failed === 0 ? undefined : failures.get(j.id);
          return failure ? { ...view, error: failure.error, errorTitle: failure.title } : view;
        })
        .sort((a, b) => (b.createdAt ?? "").localeCompare(a.createdAt ?? "")),
    [jobs.data, jobProgress, failures],
  );

  // Re-read the videos while this list's jobs move (at most every VIDEO_REFRESH_MS).
  const progressKey = views.map((v) => `${v.id}:${v.seq}`).join(",");
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    if (!progressKey || timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      void refreshInBackground(client, { queryKey: keys.videos(listId) });
    }, VIDEO_REFRESH_MS);
  }, [progressKey, client, listId]);
  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
      timer.current = null;
    },
    [],
  );

  if (missing) {
    return <NotFound title="List not found" text="This list does not exist or was deleted." back={{ to: "/lists", label: "All lists" }} />;
  }

  const error = list.error ?? videos.error ?? jobs.error;

  return (
    <div className="page">
      <p className="crumbs">
        <Link to="/lists">← Lists</Link>
      </p>
      <h1>{list.data ? list.data.name : "List"}</h1>
      {error && (
        <p className="error-text" data-testid="page-error">
          {describeError(error)}
        </p>
      )}
      <h2>Jobs</h2>
      <section className="dashboard" aria-label="Jobs of this list" data-testid="dashboard">
        {views.length === 0 ? (
          <p className="muted">{jobs.isPending ? "Loading..." : "No job for this list yet."}</p>
        ) : (
          <ul className="job-list">
            {views.map((v) => (
              <JobCard key={v.id} view={v} showList={false} />
            ))}
          </ul>
        )}
        {jobs.hasNextPage && (
          <button type="button" onClick={() => void jobs.fetchNextPage()}>
            Older jobs
          </button>
        )}
      </section>
      <h2>Add videos</h2>
      <ImportPanel
        listId={listId}
        onStarted={() => {
          void client.invalidateQueries({ queryKey: keys.jobs });
          void client.invalidateQueries({ queryKey: keys.videos(listId) });
          void client.invalidateQueries({ queryKey: keys.list(listId) });
        }}
      />
      <div className="section-head">
        <h2>
          Videos{list.data ? ` (${list.data.video_count})` : ""}
        </h2>
        <label>
          Show{" "}
          <select aria-label="Video status" value={status} onChange={(e) => setStatus(e.target.value as VideoStatus | "")}>
            {VIDEO_FILTERS.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </div>
      {videos.isPending ? (
        <p className="muted">Loading...</p>
      ) : rows.length === 0 && status ? (
        <p className="muted">No {status} video in this list.</p>
      ) : (
        <VideoTable videos={rows} />
      )}
      {videos.hasNextPage && (
        <button type="button" disabled={videos.isFetchingNextPage} onClick={() => void videos.fetchNextPage()}>
          {videos.isFetchingNextPage ? "Loading..." : "Load more videos"}
        </button>
      )}
    </div>
  );
}
