/** One job's live progress: message, percentage, videos done, status badge and error. */
import type { JobStatus, ProgressEvent } from "../types";

/** Bar colour per job status. */
export const STATUS_COLORS: Record<JobStatus, string> = {
  pending: "#9ca3af", // grey
  processing: "#2563eb", // blue
  completed: "#16a34a", // green
  failed: "#dc2626", // red
  cancelled: "#d97706", // amber
};

export const STATUS_LABELS: Record<JobStatus, string> = {
  pending: "Pending",
  processing: "Processing",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};

export interface ProgressBarProps {
  job: ProgressEvent & { last_error?: string | null; last_error_title?: string | null };
  /** Accessible name of the bar; default "Job progress". */
  label?: string;
}

export function ProgressBar({ job, label }: ProgressBarProps) {
  const status: JobStatus = job.status in STATUS_COLORS ? job.status : "pending";
  const color = STATUS_COLORS[status];
  const percent = Math.max(0, Math.min(100, Math.round(job.progress)));
  const error = job.error ?? job.last_error ?? null;
  const errorTitle = job.error ? job.video_title : (job.last_error_title ?? null);
  return (
    <div className={`progress status-${status}`} data-status={status} data-job-id={job.job_id}>
      <div className="progress-head">
        <span className={`badge badge-${status}`} style={{ backgroundColor: color }} data-testid="status-badge">
          {STATUS_LABELS[status]}
        </span>
        <span className="progress-message" data-testid="progress-message">
          {job.message}
        </span>
        <span className="progress-percent" data-testid="progress-percent">
          {percent}%
        </span>
      </div>
      <div
        className="progress-track"
        role="progressbar"
        aria-label={label ?? "Job progress"}
        aria-valuenow={percent}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuetext={`${percent}% (${STATUS_LABELS[status]})`}
      >
        <div className="progress-fill" style={{ width: `${percent}%`, backgroundColor: color }} />
      </div>
      <div className="progress-foot">
        <span className="progress-count" data-testid="progress-count">
          {job.current_video}/{job.total_videos} videos
        </span>
        {job.failed_videos > 0 && (
          <span className="progress-failed" data-testid="progress-failed">
            {job.failed_videos} failed
          </span>
        )}
      </div>
      {error && (
        <div className="progress-error" role="alert" data-testid="progress-error">
          {errorTitle ? <strong>{errorTitle}: </strong> : null}
          {error}
        </div>
      )}
    </div>
  );
}
