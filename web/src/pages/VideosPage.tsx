/** A list: the live dashboard of its jobs above its video table. */
import { useCallback, useEffect, useMemo, useRef, useState } from "react";

import { api, ApiError } from "../api";
import { ImportPanel } from "../components/ImportPanel";
import { JobDashboard } from "../components/JobDashboard";
import { VideoTable } from "../components/VideoTable";
import { useJobProgress } from "../progress/useJobProgress";
import type { Job, Video, VideoList } from "../types";

interface JobInfo {
  listId: string | null;
  createdAt: string;
}

function infoOf(job: Job): JobInfo {
  return { listId: job.list_id ?? null, createdAt: job.created_at ?? "" };
}

/** How often the video table may be re-read while this list's jobs report progress. */
const VIDEO_REFRESH_MS = 300;

export function VideosPage({ listId }: { listId: string }) {
  const { jobProgress } = useJobProgress();
  const [list, setList] = useState<VideoList | null>(null);
  const [videos, setVideos] = useState<Video[]>([]);
  const [error, setError] = useState<string | null>(null);
  // job id -> its list and creation time (events carry neither; GET /api/jobs does)
  const [jobLists, setJobLists] = useState<ReadonlyMap<string, JobInfo>>(new Map());
  const asked = useRef(new Set<string>());

  const loadVideos = useCallback(() => {
    api.videos(listId).then(setVideos, (e: Error) => setError(e.message));
  }, [listId]);

  useEffect(() => {
    setList(null);
    setVideos([]);
    setError(null);
    api.list(listId).then(setList, (e: unknown) =>
      setError(e instanceof ApiError && e.status === 404 ? "No such list." : String(e)),
    );
    loadVideos();
    api.jobs().then(
      (jobs) => setJobLists((prev) => new Map([...prev, ...jobs.map((j) => [j.id, infoOf(j)] as const)])),
      () => undefined,
    );
  }, [listId, loadVideos]);

  // Learn the list of jobs we have not seen yet (started in another tab, say).
  useEffect(() => {
    for (const id of jobProgress.keys()) {
      if (jobLists.has(id) || asked.current.has(id)) continue;
      asked.current.add(id);
      api.job(id).then(
        (job) => setJobLists((prev) => new Map(prev).set(id, infoOf(job))),
        () => setJobLists((prev) => new Map(prev).set(id, { listId: null, createdAt: "" })),
      );
    }
  }, [jobProgress, jobLists]);

  const jobs = useMemo(
    () =>
      [...jobProgress.values()]
        .filter((j) => jobLists.get(j.job_id)?.listId === listId)
        // newest job first, by the job's creation (not its last event: cards stay put)
        .sort((a, b) => ((jobLists.get(a.job_id)?.createdAt ?? "") < (jobLists.get(b.job_id)?.createdAt ?? "") ? 1 : -1)),
    [jobProgress, jobLists, listId],
  );

  // job id -> its most recently processed failed video (see JobDashboard.failureOf)
  const failures = useMemo(() => {
    const out = new Map<string, { title: string | null; error: string; at: string }>();
    for (const v of videos) {
      if (v.status !== "failed" || !v.error || !v.job_id) continue;
      const at = v.processed_at ?? "";
      const known = out.get(v.job_id);
      if (!known || at >= known.at) out.set(v.job_id, { title: v.title, error: v.error, at });
    }
    return out;
  }, [videos]);

  // Re-read the table while this list's jobs move (at most every VIDEO_REFRESH_MS).
  const progressKey = jobs.map((j) => `${j.job_id}:${j.seq}`).join(",");
  const refreshTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    if (!progressKey || refreshTimer.current) return;
    refreshTimer.current = setTimeout(() => {
      refreshTimer.current = null;
      loadVideos();
    }, VIDEO_REFRESH_MS);
  }, [progressKey, loadVideos]);
  useEffect(
    () => () => {
      if (refreshTimer.current) clearTimeout(refreshTimer.current);
      refreshTimer.current = null;
    },
    [],
  );

  return (
    <div className="page">
      <h1>{list ? list.name : "List"}</h1>
      {error && (
        <p className="error-text" role="alert">
          {error}
        </p>
      )}
      <h2>Jobs</h2>
      <JobDashboard jobs={jobs} failureOf={(id) => failures.get(id)} />
      <h2>Add videos</h2>
      <ImportPanel
        listId={listId}
        onStarted={(accepted) => {
          // "\uffff": sorts first (newest) until the server's creation time is known
          setJobLists((prev) => new Map(prev).set(accepted.job_id, { listId, createdAt: "\uffff" }));
          api.job(accepted.job_id).then(
            (job) => setJobLists((prev) => new Map(prev).set(job.id, infoOf(job))),
            () => undefined,
          );
          loadVideos();
        }}
      />
      <h2>Videos</h2>
      <VideoTable videos={videos} />
    </div>
  );
}
