/** One job on a dashboard: name, list, progress, counts, times, priority and actions. */
import { formatDateTime } from "../format";
import type { JobView } from "../jobView";
import { JobActions } from "./JobActions";
import { Link } from "./Link";
import { ProgressBar } from "./ProgressBar";

export function JobCard({ view, showList = true }: { view: JobView; showList?: boolean }) {
  return (
    <li className="job-card" data-testid="job-card" data-job-id={view.id} data-status={view.status}>
      <div className="job-card-head">
        <div className="job-card-names">
          <Link to={`/jobs/${view.id}`} className="job-title">
            {view.name}
          </Link>
          {showList && view.listId && (
            <span className="job-list-name">
              in <Link to={`/lists/${view.listId}`}>{view.listName ?? "its list"}</Link>
            </span>
          )}
        </div>
        <JobActions view={view} />
      </div>
      <ProgressBar view={view} label={`Progress of ${view.name}`} />
      <dl className="job-times">
        <div>
          <dt>Started</dt>
          <dd>{formatDateTime(view.startedAt ?? view.createdAt)}</dd>
        </div>
        {view.finishedAt && (
          <div>
            <dt>Finished</dt>
            <dd data-testid="job-finished">{formatDateTime(view.finishedAt)}</dd>
          </div>
        )}
        {view.priority !== null && view.priority !== undefined && (
          <div>
            <dt>Priority</dt>
            <dd>{String(view.priority)}</dd>
          </div>
        )}
      </dl>
    </li>
  );
}
