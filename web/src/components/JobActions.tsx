/** A job's buttons: Cancel (while active), Retry failed (n) (once finished), Delete (confirmed). */
import { useState } from "react";

import { describeError, type JobView } from "../jobView";
import { useJobActions } from "../queries";
import { navigate } from "../router";
import { isFinalStatus } from "../types";

export interface JobActionsProps {
  view: JobView;
  /** Where to go after a delete (the job page leaves itself); default: stay. */
  afterDelete?: string;
  /** Open the new job after a retry (the job page does). */
  openRetry?: boolean;
}

export function JobActions({ view, afterDelete, openRetry }: JobActionsProps) {
  const { cancel, remove, retry } = useJobActions();
  const [error, setError] = useState<string | null>(null);
  const final = isFinalStatus(view.status);
  const busy = cancel.isPending || remove.isPending || retry.isPending;

  const run = async (action: () => Promise<unknown>) => {
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(describeError(e));
    }
  };

  return (
    <div className="job-actions">
      {!final && (
        <button type="button" className="small" disabled={busy} onClick={() => void run(() => cancel.mutateAsync(view.id))}>
          Cancel
        </button>
      )}
      {final && view.retryable > 0 && (
        <button
          type="button"
          className="small"
          disabled={busy}
          onClick={() =>
            void run(async () => {
              const { job_id } = await retry.mutateAsync(view.id);
              if (openRetry) navigate(`/jobs/${job_id}`);
            })
          }
        >
          Retry failed ({view.retryable})
        </button>
      )}
      <button
        type="button"
        className="small danger"
        disabled={busy}
        onClick={() => {
          if (!window.confirm(`Delete the job "${view.name}" and its history? The videos stay in the list.`)) return;
          void run(async () => {
            await remove.mutateAsync(view.id);
            if (afterDelete) navigate(afterDelete, { replace: true });
          });
        }}
      >
        Delete
      </button>
      {error && (
        <span className="error-text" data-testid="action-error">
          {error}
        </span>
      )}
    </div>
  );
}
