/** The live dashboard: one ProgressBar per job, cancel one or several. */
import { useState } from "react";

import { api } from "../api";
import type { JobProgress } from "../progress/store";
import { isFinalStatus } from "../types";
import { Link } from "./Link";
import { ProgressBar } from "./ProgressBar";

export interface JobDashboardProps {
  jobs: readonly JobProgress[];
  titleOf?: (jobId: string) => string | undefined;
  /**
   * The last failed video of a job, for jobs whose error event this page never saw (it
   * joined later: a snapshot carries only the latest event).
   */
  failureOf?: (jobId: string) => { title: string | null; error: string } | undefined;
}

/** The job with `last_error` filled from `failureOf` when the events did not carry it. */
function withFailure(job: JobProgress, failureOf: JobDashboardProps["failureOf"]): JobProgress {
  if (job.last_error || job.failed_videos === 0 || !failureOf) return job;
  const failure = failureOf(job.job_id);
  return failure ? { ...job, last_error: failure.error, last_error_title: failure.title } : job;
}

export function JobDashboard({ jobs, titleOf, failureOf }: JobDashboardProps) {
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const cancellable = jobs.filter((j) => !isFinalStatus(j.status));
  const selectedActive = cancellable.filter((j) => selected.has(j.job_id)).map((j) => j.job_id);

  const toggle = (id: string) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };

  const cancel = async (ids: string[]) => {
    if (ids.length === 0) return;
    setBusy(true);
    setError(null);
    try {
      if (ids.length === 1) await api.cancelJob(ids[0]);
      else await api.cancelJobs(ids);
      setSelected(new Set());
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  if (jobs.length === 0) {
    return (
      <section className="dashboard" aria-label="Active jobs" data-testid="dashboard">
        <p className="muted">No active jobs.</p>
      </section>
    );
  }

  return (
    <section className="dashboard" aria-label="Active jobs" data-testid="dashboard">
      <div className="dashboard-tools">
        <button
          type="button"
          disabled={busy || selectedActive.length === 0}
          onClick={() => void cancel(selectedActive)}
          data-testid="cancel-selected"
        >
          Cancel selected ({selectedActive.length})
        </button>
        {error && <span className="error-text">{error}</span>}
      </div>
      <ul className="job-list">
        {jobs.map((job) => {
          const final = isFinalStatus(job.status);
          return (
            <li key={job.job_id} className="job-card" data-testid="job-card" data-job-id={job.job_id}>
              <div className="job-card-head">
                {!final && (
                  <input
                    type="checkbox"
                    aria-label={`Select job ${job.job_id}`}
                    checked={selected.has(job.job_id)}
                    onChange={() => toggle(job.job_id)}
                  />
                )}
                <Link to={`/jobs/${job.job_id}`} className="job-title">
                  {titleOf?.(job.job_id) ?? `Job ${job.job_id.slice(0, 8)}`}
                </Link>
                {!final && (
                  <button type="button" className="small" disabled={busy} onClick={() => void cancel([job.job_id])}>
                    Cancel
                  </button>
                )}
              </div>
              <ProgressBar job={withFailure(job, failureOf)} label={`Progress of job ${job.job_id}`} />
            </li>
          );
        })}
      </ul>
    </section>
  );
}
