/** One job: name, list, state, actions, the failed videos, and its full event timeline. */
import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useMemo } from "react";

import { ApiError } from "../api";
import { JobActions } from "../components/JobActions";
import { Link } from "../components/Link";
import { NotFound } from "../components/NotFound";
import { ProgressBar, STATUS_COLORS } from "../components/ProgressBar";
import { formatDateTime } from "../format";
import { describeError, jobView, plural } from "../jobView";
import { useJobProgress } from "../progress/useJobProgress";
import { keys, useHistory, useJob } from "../queries";

export function JobPage({ jobId }: { jobId: string }) {
  const client = useQueryClient();
  const { jobProgress } = useJobProgress();
  const job = useJob(jobId);
  const history = useHistory(jobId);
  const events = useMemo(() => history.data ?? [], [history.data]);
  const live = jobProgress.get(jobId);

  // Live: the socket reports a newer seq -> read the new events (only those) from REST.
  const heldSeq = events.length ? events[events.length - 1].seq : 0;
  useEffect(() => {
    if (live && live.seq > heldSeq && !history.isFetching) void client.invalidateQueries({ queryKey: keys.history(jobId) });
  }, [live, heldSeq, history.isFetching, client, jobId]);

  const notFound = job.error instanceof ApiError && job.error.status === 404;
  if (notFound) {
    return <NotFound title="Job not found" text="This job does not exist or was deleted." back={{ to: "/jobs", label: "All jobs" }} />;
  }

  const latestEvent = events.length ? events[events.length - 1] : undefined;
  const base = job.data ? { ...job.data, latest_event: pickNewer(job.data.latest_event, latestEvent) } : undefined;
  const view = jobView(jobId, base, live);
  // every failed video once, with its error (the history holds each failure event)
  const failures = new Map<string, { title: string | null; error: string }>();
  for (const e of events) if (e.error && e.video_id) failures.set(e.video_id, { title: e.video_title, error: e.error });
  if (failures.size > 0) {
    const last = [...failures.values()].pop();
    if (last) Object.assign(view, { error: last.error, errorTitle: last.title });
  }

  return (
    <div className="page">
      <p className="crumbs">
        <Link to="/jobs">← All jobs</Link>
        {view.listId && (
          <>
            {" · "}
            <Link to={`/lists/${view.listId}`}>{view.listName ?? "Its list"}</Link>
          </>
        )}
      </p>
      <h1 data-testid="job-name">{job.data ? view.name : "Job"}</h1>
      {job.error && !notFound && (
        <p className="error-text" data-testid="page-error">
          {describeError(job.error)}
        </p>
      )}
      {(job.data || live) && (
        <>
          <ProgressBar view={view} />
          <dl className="job-times">
            <div>
              <dt>Created</dt>
              <dd>{formatDateTime(view.createdAt)}</dd>
            </div>
            <div>
              <dt>Started</dt>
              <dd>{formatDateTime(view.startedAt)}</dd>
            </div>
            <div>
              <dt>Finished</dt>
              <dd>{formatDateTime(view.finishedAt)}</dd>
            </div>
            {view.source && (
              <div>
                <dt>Source</dt>
                <dd>{view.source}</dd>
              </div>
            )}
            {view.priority !== null && (
              <div>
                <dt>Priority</dt>
                <dd>{String(view.priority)}</dd>
              </div>
            )}
          </dl>
          <JobActions view={view} afterDelete="/jobs" openRetry />
        </>
      )}
      {failures.size > 0 && (
        <section aria-labelledby="failed-videos">
          <h2 id="failed-videos">{plural(failures.size, "failed video")}</h2>
          <ul className="failures" data-testid="failures">
            {[...failures.entries()].map(([id, f]) => (
              <li key={id}>
                <strong>{f.title ?? id.slice(0, 8)}</strong>: {f.error}
              </li>
            ))}
          </ul>
        </section>
      )}
      <h2>Timeline</h2>
      {history.error && <p className="error-text">{describeError(history.error)}</p>}
      <table className="timeline responsive" data-testid="timeline">
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Time</th>
            <th scope="col">Status</th>
            <th scope="col">Progress</th>
            <th scope="col">Message</th>
            <th scope="col">Error</th>
          </tr>
        </thead>
        <tbody>
          {events.map((e) => (
            <tr key={e.seq} data-seq={e.seq}>
              <td data-label="#">{e.seq}</td>
              <td data-label="Time">{formatDateTime(e.created_at)}</td>
              <td data-label="Status">
                <span className="badge" style={{ backgroundColor: STATUS_COLORS[e.status] }}>
                  {e.status}
                </span>
              </td>
              <td data-label="Progress">
                {e.progress}% ({e.processed_videos}/{e.total_videos}
                {e.failed_videos ? `, ${e.failed_videos} failed` : ""})
              </td>
              <td data-label="Message">{e.message}</td>
              <td data-label="Error" className="error-text">
                {e.error ?? ""}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function pickNewer<T extends { seq: number }>(a: T | null, b: T | undefined): T | null {
  if (!b) return a;
  if (!a) return b;
  return b.seq > a.seq ? b : a;
}
