/** Filling a gap from the REST history (`after_seq` cursor) when `resume` cannot. */
import type { ProgressEvent } from "../types";
import type { ProgressStore } from "./store";

/** Fetches one page of `GET /api/jobs/{id}/progress-history?after_seq=&limit=`. */
export type HistoryFetcher = (
  jobId: string,
  afterSeq: number,
  limit: number,
) => Promise<ProgressEvent[]>;

export const HISTORY_PAGE_LIMIT = 1000;

/**
 * For each job: page through `GET /api/jobs/{id}/progress-history?after_seq=` from the
 * store's last seq until the gap is closed or the history ends. A gap the history cannot
 * close (events purged, request failing) is given up: the buffered events are applied
 * as they are, so the dashboard never freezes on a job. Never throws.
 */
export async function fillGapsFromHistory(
  store: ProgressStore,
  jobIds: readonly string[],
  fetchHistory: HistoryFetcher | undefined,
): Promise<void> {
  for (const jobId of jobIds) {
    if (fetchHistory) {
      try {
        for (;;) {
          const after = store.getLastSeq(jobId);
          const page = await fetchHistory(jobId, after, HISTORY_PAGE_LIMIT);
          store.applyEvents(page);
          if (!store.gapJobs().includes(jobId)) break;
          if (page.length < HISTORY_PAGE_LIMIT || store.getLastSeq(jobId) === after) break;
        }
      } catch {
        // fall through to giving up the gap
      }
    }
    if (store.gapJobs().includes(jobId)) store.forceApplyPending(jobId);
  }
}
