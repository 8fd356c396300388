/**
 * One job as the dashboard shows it: the REST record (name, list, times) merged with
 * the newest live event the socket delivered, plus the wording rules (plurals, final
 * outcome, errors written for people). Plain functions, unit tested directly.
 */
import { ApiError, type CancelResult } from "./api";
import type { JobProgress } from "./progress/store";
import { isFinalStatus, type Job, type JobStatus, type ProgressEvent } from "./types";

export interface JobView {
  id: string;
  name: string;
  listId: string | null;
  listName: string | null;
  source: string | null;
  status: JobStatus;
  /** 0..100; 100 once the job completed or failed (it ran to its end). */
  percent: number;
  total: number;
  processed: number;
  failed: number;
  /** Failed videos a retry would take. */
  retryable: number;
  message: string;
  /** The error of the last failed video seen, and that video's title. */
  error: string | null;
  errorTitle: string | null;
  createdAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  priority: number | string | null;
  seq: number;
}

/** "1 video", "2 videos". */
export function plural(count: number, word: string, many = `${word}s`): string {
  return `${count} ${count === 1 ? word : many}`;
}

/** The name to show for a job: its own, or one derived from what is known. */
export function jobName(job: Pick<Job, "id" | "name" | "total_videos"> | undefined, id: string): string {
  if (job?.name) return job.name;
  if (job) return `Job ${id.slice(0, 8)} · ${plural(job.total_videos, "video")}`;
  return `Job ${id.slice(0, 8)}`;
}

function eventOf(job: Job | undefined, live: JobProgress | undefined): (ProgressEvent & Partial<JobProgress>) | null {
  const stored = job?.latest_event ?? null;
  if (live && (!stored || live.seq >= stored.seq)) return live;
  return stored;
}

/** Merge the REST record and the live state of job `id` (either may be missing). */
export function jobView(id: string, job: Job | undefined, live: JobProgress | undefined): JobView {
  const event = eventOf(job, live);
  const status: JobStatus = (event?.status ?? job?.status ?? "pending") as JobStatus;
  const total = event?.total_videos ?? job?.total_videos ?? 0;
  const processed = event?.processed_videos ?? job?.processed_videos ?? 0;
  const failed = event?.failed_videos ?? job?.failed_videos ?? 0;
  const ranToEnd = status === "completed" || status === "failed";
  const raw = event?.progress ?? (total > 0 ? Math.floor((processed * 100) / total) : 0);
  const percent = ranToEnd ? 100 : Math.max(0, Math.min(100, Math.round(raw)));
  const error = event?.error ?? live?.last_error ?? null;
  const errorTitle = event?.error ? event.video_title : (live?.last_error_title ?? null);
  return {
    id,
    name: jobName(job, id),
    listId: job?.list_id ?? null,
    listName: job?.list_name ?? null,
    source: job?.source ?? null,
    status,
    percent,
    total,
    processed,
    failed,
    retryable: isFinalStatus(status) ? (job?.retryable_videos ?? failed) : 0,
    message: event?.message ?? "",
    error,
    errorTitle,
    createdAt: job?.created_at ?? null,
    startedAt: job?.started_at ?? null,
    finishedAt: job?.finished_at ?? (isFinalStatus(status) ? (event?.created_at ?? null) : null),
    priority: job?.priority ?? null,
    seq: event?.seq ?? job?.last_seq ?? 0,
  };
}

/** The one line that says how a job stands, counted right ("1 video", "All 3 videos"). */
export function outcomeText(v: Pick<JobView, "status" | "total" | "processed" | "failed" | "message">): string {
  const ok = Math.max(0, v.processed - v.failed);
  switch (v.status) {
    case "completed":
      if (v.failed === 0) return v.total === 1 ? "The video is ready" : `All ${plural(v.total, "video")} are ready`;
      return `${ok} of ${plural(v.total, "video")} ready, ${v.failed} failed`;
    case "failed":
      if (v.total === 1) return "The video failed";
      if (v.failed >= v.total) return `All ${plural(v.total, "video")} failed`;
      return `Stopped: ${ok} of ${plural(v.total, "video")} ready, ${v.failed} failed`;
    case "cancelled":
      return `Cancelled after ${v.processed} of ${plural(v.total, "video")}`;
    case "pending":
      return `Waiting to start (${plural(v.total, "video")})`;
    default:
      return v.message || `Processing ${v.processed} of ${plural(v.total, "video")}`;
  }
}

/** An error as a sentence for the person using the page (never a bare "Failed to fetch"). */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 404) return "Not found: it may have been deleted.";
    if (error.status >= 500) return "The server had a problem; it will be retried.";
    return error.message || `The request was refused (${error.status}).`;
  }
  if (error instanceof TypeError || (error instanceof Error && /fetch|network/i.test(error.message))) {
    return "Cannot reach the server right now; retrying when the connection is back.";
  }
  return error instanceof Error ? error.message : String(error);
}

/** What a batch cancel did, as one sentence: "2 cancelled, 1 stopping before its next video." */
export function cancelSummary(results: readonly Pick<CancelResult, "result">[]): string {
  const count = (r: CancelResult["result"]) => results.filter((x) => x.result === r).length;
  const parts: string[] = [];
  const cancelled = count("cancelled");
  const stopping = count("cancel_requested");
  const finished = count("already_finished");
  const missing = count("not_found");
  if (cancelled) parts.push(`${plural(cancelled, "job")} cancelled`);
  if (stopping) parts.push(`${plural(stopping, "job")} stopping before ${stopping === 1 ? "its" : "their"} next video`);
  if (finished) parts.push(`${plural(finished, "job")} had already finished`);
  if (missing) parts.push(`${plural(missing, "job")} no longer found`);
  return parts.length ? `${parts.join(", ")}.` : "Nothing to cancel.";
}
