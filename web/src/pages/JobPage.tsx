/** One job: its current state and its full event timeline (REST history, paged by after_seq). */
import { useCallback, useEffect, useRef, useState } from "react";

import { api, ApiError } from "../api";
import { Link } from "../components/Link";
import { ProgressBar, STATUS_COLORS } from "../components/ProgressBar";
import { formatDateTime } from "../format";
import { useJobProgress } from "../progress/useJobProgress";
import { isFinalStatus, type Job, type ProgressEvent } from "../types";

const PAGE = 1000;

export function JobPage({ jobId }: { jobId: string }) {
  const { jobProgress } = useJobProgress();
  const [job, setJob] = useState<Job | null>(null);
  const [events, setEvents] = useState<ProgressEvent[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [cancelling, setCancelling] = useState(false);
  const lastSeq = useRef(0);
  const loading = useRef(false);
  const again = useRef(false);

  /** Page through the history after the last seq we hold, until the end. */
  const loadMore = useCallback(async () => {
    if (loading.current) {
      again.current = true;
      return;
    }
    loading.current = true;
    try {
      do {
        again.current = false;
        for (;;) {
          const page = await api.history(jobId, lastSeq.current, PAGE);
          const fresh = page.events.filter((e) => e.seq > lastSeq.current);
          if (fresh.length > 0) {
            lastSeq.current = fresh[fresh.length - 1].seq;
            setEvents((prev) => [...prev, ...fresh]);
          }
          if (page.events.length < PAGE) break;
        }
      } while (again.current);
    } catch (e) {
      setError(e instanceof ApiError && e.status === 404 ? "No such job." : String(e));
    } finally {
      loading.current = false;
    }
  }, [jobId]);

  useEffect(() => {
    lastSeq.current = 0;
    setEvents([]);
    setJob(null);
    setError(null);
    api.job(jobId).then(setJob, (e: unknown) =>
      setError(e instanceof ApiError && e.status === 404 ? "No such job." : String(e)),
    );
    void loadMore();
  }, [jobId, loadMore]);

  // Live: when the socket reports a newer seq, read the new events from the history.
  const live = jobProgress.get(jobId);
  useEffect(() => {
    if (live && live.seq > lastSeq.current) void loadMore();
  }, [live, loadMore]);

  const latest: ProgressEvent | null = live ?? (events.length ? events[events.length - 1] : (job?.latest_event ?? null));

  const cancel = async () => {
    setCancelling(true);
    try {
      await api.cancelJob(jobId);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setCancelling(false);
    }
  };

  return (
    <div className="page">
      <p>
        {job?.list_id ? <Link to={`/lists/${job.list_id}`}>← Back to the list</Link> : <Link to="/lists">← Lists</Link>}
      </p>
      <h1>Job {jobId.slice(0, 8)}</h1>
      {error && (
        <p className="error-text" role="alert">
          {error}
        </p>
      )}
      {latest && <ProgressBar job={latest} />}
      {latest && !isFinalStatus(latest.status) && (
        <button type="button" disabled={cancelling} onClick={() => void cancel()}>
          Cancel job
        </button>
      )}
      <h2>Timeline</h2>
      <table className="timeline" data-testid="timeline">
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
              <td>{e.seq}</td>
              <td>{formatDateTime(e.created_at)}</td>
              <td>
                <span className="badge" style={{ backgroundColor: STATUS_COLORS[e.status] }}>
                  {e.status}
                </span>
              </td>
              <td>
                {e.progress}% ({e.processed_videos}/{e.total_videos}
                {e.failed_videos ? `, ${e.failed_videos} failed` : ""})
              </td>
              <td>{e.message}</td>
              <td className="error-text">{e.error ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
