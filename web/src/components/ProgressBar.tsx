/** One job's progress: status badge, what is happening or how it ended, bar, counts, error. */
import { outcomeText, plural, type JobView } from "../jobView";
import type { JobStatus } from "../types";

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
  view: JobView;
  /** Accessible name of the bar; default "Job progress". */
  label?: string;
}

export function ProgressBar({ view, label }: ProgressBarProps) {
  const status: JobStatus = view.status in STATUS_COLORS ? view.status : "pending";
  const color = STATUS_COLORS[status];
  const percent = view.percent;
  const text = status === "processing" ? view.message || outcomeText(view) : outcomeText(view);
  return (
    <div className={`progress status-${status}`} data-status={status} data-job-id={view.id}>
      <div className="progress-head">
        <span className={`badge badge-${status}`} style={{ backgroundColor: color }} data-testid="status-badge">
          {STATUS_LABELS[status]}
        </span>
        <span className="progress-message" data-testid="progress-message">
          {text}
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
          {view.processed}/{plural(view.total, "video")}
        </span>
        {view.failed > 0 && (
          <span className="progress-failed" data-testid="progress-failed">
            {view.failed} failed
          </span>
        )}
      </div>
      {view.error && (
        <div className="progress-error" data-testid="progress-error">
          {view.errorTitle ? <strong>{view.errorTitle}: </strong> : null}
          {view.error}
        </div>
      )}
    </div>
  );
}
