/** Wire types shared with the backend (DESIGN.md sections 3, 5, 6). */

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

/** `snapshot` payload: the latest event of each active or recently finished job. */
export interface SnapshotPayload {
  jobs: ProgressEvent[];
}

/** `resume` request and its ack. */
export interface ResumeRequest {
  jobs: Record<string, number>;
}
export interface ResumeAck {
  events: ProgressEvent[];
  truncated: boolean;
}

/** `connect_error` data of a refusal. */
export type RefusalReason = "invalid_token" | "too_many_connections";
export interface RefusalData {
  code: number;
  reason: RefusalReason | string;
}

export function isFinalStatus(status: string): boolean {
  return FINAL_STATUSES.has(status as JobStatus);
}

export type VideoStatus = "pending" | "processing" | "ready" | "failed";

export interface Video {
  id: string;
  list_id?: string;
  job_id?: string | null;
  source?: string;
  title: string | null;
  status: VideoStatus;
  duration_s: number | null;
  width: number | null;
  height: number | null;
  fps?: number | null;
  video_codec: string | null;
  audio_codec?: string | null;
  bitrate?: number | null;
  size_bytes?: number | null;
  thumbnail_url: string | null;
  error: string | null;
  position?: number;
  created_at?: string;
  processed_at?: string | null;
}

export interface VideoList {
  id: string;
  name: string;
  created_at?: string;
  video_count?: number;
}

export interface Job {
  id: string;
  list_id?: string;
  status: JobStatus;
  total_videos: number;
  processed_videos?: number;
  failed_videos?: number;
  last_seq?: number;
  created_at?: string;
  started_at?: string | null;
  finished_at?: string | null;
  latest_event?: ProgressEvent | null;
}

export interface User {
  id: string;
  username: string;
}
