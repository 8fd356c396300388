/**
 * The REST client (DESIGN.md section 6). Every call sends the bearer token; a 401 for the token
 * still in use calls the registered handler (back to the login page) and throws {@link ApiError}.
 */
import { currentToken } from "./auth";
import type { Job, JobStatus, Page, ProgressEvent, RequestJson, ResponseJson, User, Video, VideoList, VideoStatus } from "./types";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(status: number, code: string, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let unauthorizedHandler: (() => void) | null = null;

/** Called on any 401 from the API (expired or revoked token). */
export function onUnauthorized(handler: (() => void) | null): void {
  unauthorizedHandler = handler;
}

function authHeaders(headers: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { Accept: "application/json", ...headers };
  const token = currentToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

/** The ApiError for a non-2xx answer (and the 401 handler called when it applies: a 401
 * for the token still in use; a late one for a token already logged out, or replaced by a
 * new login meanwhile, must not log the new session out or move the login page on). */
function failure(status: number, statusText: string, text: string, path: string, sentToken: string | undefined): ApiError {
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  const err = (data ?? {}) as { code?: string; message?: string } & Record<string, unknown>;
  if (status === 401 && sentToken && sentToken === currentToken() && path !== "/api/auth/login") unauthorizedHandler?.();
  return new ApiError(status, err.code ?? `http_${status}`, err.message ?? statusText, err);
}

function bearer(headers: Record<string, string>): string | undefined {
  return headers.Authorization?.slice("Bearer ".length);
}

async function request<T>(method: string, path: string, body?: BodyInit | object | null, headers: Record<string, string> = {}): Promise<T> {
  const h = authHeaders(headers);
  let payload: BodyInit | undefined;
  if (body instanceof FormData || typeof body === "string" || body instanceof Blob) {
    payload = body;
  } else if (body !== undefined && body !== null) {
    payload = JSON.stringify(body);
    h["Content-Type"] = "application/json";
  }
  const response = await fetch(path, { method, headers: h, body: payload });
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  if (!response.ok) throw failure(response.status, response.statusText, text, path, bearer(h));
  try {
    return (text ? JSON.parse(text) : null) as T;
  } catch {
    return null as T;
  }
}

/** Bytes sent so far of an upload, and its size. */
export interface UploadProgress {
  loaded: number;
  total: number;
}

/**
 * POST a form with XMLHttpRequest, reporting the bytes sent (fetch has no upload
 * progress). Resolves with the JSON answer; rejects with ApiError, or a TypeError when
 * the server cannot be reached (as fetch does).
 */
function postFormWithProgress<T>(path: string, form: FormData, onProgress?: (p: UploadProgress) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const h = authHeaders();
    for (const [name, value] of Object.entries(h)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress?.({ loaded: e.loaded, total: e.total });
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve((xhr.responseText ? JSON.parse(xhr.responseText) : null) as T);
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      } else reject(failure(xhr.status, xhr.statusText, xhr.responseText, path, bearer(h)));
    };
    xhr.onerror = () => reject(new TypeError("Failed to fetch"));
    xhr.onabort = () => reject(new DOMException("The upload was cancelled.", "AbortError"));
    xhr.send(form);
  });
}

/** Filters of the all-jobs listing (`GET /api/jobs`). */
export interface JobsQuery {
  status?: JobsFilter | null;
  list_id?: string | null;
  q?: string | null;
  cursor?: string | null;
  limit?: number;
}

/** Filters of a list's videos (`GET /api/lists/{id}/videos`). */
export interface VideosQuery {
  status?: VideoStatus | null;
  cursor?: string | null;
  limit?: number;
}

function queryString(params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** A page of a listing, whichever of `{items, next_cursor}` or `{<key>: [...]}` it came as. */
function asPage<T>(data: unknown, key: string): Page<T> {
  const d = (data ?? {}) as { items?: T[]; next_cursor?: string | null } & Record<string, unknown>;
  if (Array.isArray(d.items)) return { items: d.items, next_cursor: d.next_cursor ?? null };
  const items = d[key];
  return { items: Array.isArray(items) ? (items as T[]) : [], next_cursor: null };
}

export type ImportAccepted = ResponseJson<"/api/lists/{list_id}/videos/bulk", "post", 202>;

export type CancelResult = ResponseJson<"/api/jobs/{job_id}/cancel", "post">;

export type HistoryPage = Omit<ResponseJson<"/api/jobs/{job_id}/progress-history", "get">, "events"> & {
  events: ProgressEvent[];
};

export type LoginResult = ResponseJson<"/api/auth/login", "post">;
export type AuthOptions = ResponseJson<"/api/auth/options", "get">;
/** `GET /api/jobs?status=`: "active", "finished" or one job status. */
export type JobsFilter = "active" | "finished" | JobStatus;

type Credentials = RequestJson<"/api/auth/login", "post">;

export const api = {
  login: (username: string, password: string) =>
    request<LoginResult>("POST", "/api/auth/login", { username, password } satisfies Credentials),
  register: (username: string, password: string) =>
    request<ResponseJson<"/api/auth/register", "post", 201>>("POST", "/api/auth/register", {
      username,
      password,
    } satisfies RequestJson<"/api/auth/register", "post">),
  authOptions: () => request<AuthOptions>("GET", "/api/auth/options"),
  me: (token?: string) => request<User>("GET", "/api/me", null, token ? { Authorization: `Bearer ${token}` } : {}),

  lists: async (): Promise<VideoList[]> => (await request<ResponseJson<"/api/lists", "get">>("GET", "/api/lists")).lists,
  list: (id: string) => request<VideoList>("GET", `/api/lists/${encodeURIComponent(id)}`),
  createList: (name: string) =>
    request<VideoList>("POST", "/api/lists", { name } satisfies RequestJson<"/api/lists", "post">),
  deleteList: (id: string) => request<void>("DELETE", `/api/lists/${encodeURIComponent(id)}`),

  importCsvText: (listId: string, csv: string) =>
    request<ImportAccepted>("POST", `/api/lists/${encodeURIComponent(listId)}/videos/bulk`, csv, { "Content-Type": "text/csv" }),
  importCsvFile: (listId: string, file: File) => {
    const form = new FormData();
    form.append("file", file, file.name);
    return request<ImportAccepted>("POST", `/api/lists/${encodeURIComponent(listId)}/videos/bulk`, form);
  },
  uploadVideos: (listId: string, files: readonly File[], onProgress?: (p: UploadProgress) => void) => {
    const form = new FormData();
    for (const file of files) form.append("file", file, file.name);
    return postFormWithProgress<ImportAccepted>(`/api/lists/${encodeURIComponent(listId)}/videos/upload`, form, onProgress);
  },
  videosPage: async (listId: string, query: VideosQuery = {}): Promise<Page<Video>> =>
    asPage<Video>(
      await request<unknown>(
        "GET",
        `/api/lists/${encodeURIComponent(listId)}/videos${queryString({ status: query.status, cursor: query.cursor, limit: query.limit })}`,
      ),
      "videos",
    ),

  jobsPage: async (query: JobsQuery = {}): Promise<Page<Job>> =>
    asPage<Job>(
      await request<unknown>(
        "GET",
        `/api/jobs${queryString({ status: query.status, list_id: query.list_id, q: query.q, cursor: query.cursor, limit: query.limit })}`,
      ),
      "jobs",
    ),
  job: (id: string) => request<Job>("GET", `/api/jobs/${encodeURIComponent(id)}`),
  cancelJob: (id: string) => request<CancelResult>("POST", `/api/jobs/${encodeURIComponent(id)}/cancel`),
  cancelJobs: async (ids: readonly string[]): Promise<CancelResult[]> =>
    (
      await request<ResponseJson<"/api/jobs/cancel", "post">>("POST", "/api/jobs/cancel", {
        job_ids: [...ids],
      } satisfies RequestJson<"/api/jobs/cancel", "post">)
    ).results,
  /** A new job over the failed videos of finished job `id` (409 while active or with none failed). */
  retryJob: (id: string) => request<{ job_id: string }>("POST", `/api/jobs/${encodeURIComponent(id)}/retry`),
  deleteJob: (id: string) => request<void>("DELETE", `/api/jobs/${encodeURIComponent(id)}`),
  history: (id: string, afterSeq = 0, limit = 1000) =>
    request<HistoryPage>("GET", `/api/jobs/${encodeURIComponent(id)}/progress-history?after_seq=${afterSeq}&limit=${limit}`),

};

/** HistoryFetcher for the progress layer. */
export async function fetchHistoryEvents(jobId: string, afterSeq: number, limit: number): Promise<ProgressEvent[]> {
  return (await api.history(jobId, afterSeq, limit)).events;
}
