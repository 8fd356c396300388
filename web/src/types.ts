/**
 * Wire types shared with the backend (DESIGN.md sections 3, 5, 6).
 *
 * The REST shapes come from `generated/openapi.ts` (generated from the server's
 * `/openapi.json`: `make web-types`); only what the OpenAPI document leaves loose is
 * narrowed here (status strings, the progress event the REST schemas type as a plain
 * object). The progress event and the status values are checked against `models/` by
 * tests/test_wire_contract.py.
 */
import type { components, paths } from "./generated/openapi";

export type JobStatus = "pending" | "processing" | "completed" | "failed" | "cancelled";

export const FINAL_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>([
  "completed",
  "failed",
  "cancelled",
]);

/** One progress event of one job: the single schema used by DB, Socket.IO and REST. */
export interface ProgressEvent {
  job_id: string;
  seq: number;
  status: JobStatus;
  progress: number;
  current_video: number;
  total_videos: number;
  processed_videos: number;
  failed_videos: number;
  message: string;
  video_id: string | null;
  video_title: string | null;
  error: string | null;
  created_at: string;
}

export function isFinalStatus(status: string): boolean {
  return FINAL_STATUSES.has(status as JobStatus);
}

export type VideoStatus = "pending" | "processing" | "ready" | "failed" | "cancelled";

// --- REST, from the OpenAPI document ------------------------------------------------

type Schemas = components["schemas"];
type Method = "get" | "post" | "delete";

/** The JSON body of the `status` response of `method path`. */
export type ResponseJson<P extends keyof paths, M extends Method, S extends number = 200> = paths[P][M] extends {
  responses: infer R;
}
  ? S extends keyof R
    ? R[S] extends { content: { "application/json": infer T } }
      ? T
      : never
    : never
  : never;

/** The JSON request body of `method path`. */
export type RequestJson<P extends keyof paths, M extends Method> = paths[P][M] extends {
  requestBody?: { content: { "application/json": infer T } };
}
  ? T
  : never;

/** The query parameters of `method path`. */
export type QueryParams<P extends keyof paths, M extends Method> = paths[P][M] extends {
  parameters: { query?: infer Q };
}
  ? NonNullable<Q>
  : never;

export type Video = Omit<Schemas["VideoOut"], "status"> & { status: VideoStatus };

export type VideoList = Schemas["ListOut"];

/**
 * What the dashboard reads of a job beyond the generated schema: the fields a server
 * without them leaves out (name, source, list name, priority) are optional, so the
 * page still renders against such a server.
 */
export interface JobExtras {
  name?: string | null;
  source?: string | null;
  list_name?: string | null;
  priority?: number | string | null;
  /** Failed videos a retry would take (those not retried already). */
  retryable_videos?: number;
}

export type Job = Omit<Schemas["JobOut"], "status" | "latest_event"> &
  JobExtras & {
    status: JobStatus;
    latest_event: ProgressEvent | null;
  };

/** One page of a cursor-paginated listing, newest first. */
export interface Page<T> {
  items: T[];
  /** Opaque; null on the last page. */
  next_cursor: string | null;
}

export type User = ResponseJson<"/api/me", "get">;
