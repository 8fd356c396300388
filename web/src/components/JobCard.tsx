/** One job on a dashboard: name, list, progress, counts, times, priority and actions. */
import { formatDateTime } from "../format";
import type { JobView } from "../jobView";
import { JobActions } from "./JobActions";
import { Link } from "./Link";
import { ProgressBar } from "./ProgressBar";

/** A card's checkbox for actions on several jobs at once (the all-jobs page's active ones). */
export interface CardSelection {
  selected: boolean;
  onToggle: (id: string, selected: boolean) => void;
}

export function JobCard({ view, showList = true, selection }: { view: JobView; showList?: boolean; selection?: CardSelection }) {
  return (
    <li className="job-card" data-testid="job-card" data-job-id={view.id} data-status={view.status}>
      <div className="job-card-head">
        {selection && (
          <input
            type="checkbox"
            className="job-select"
            aria-label={`Select ${view.name}`}
            checked={selection.selected}
            onChange={(e) => selection.onToggle(view.id, e.target.checked)}
          />
        )}
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
