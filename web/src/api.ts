/**
 * The REST client (DESIGN.md section 6). Every call sends the bearer token; a 401 calls
 * the registered handler (back to the login page) and throws {@link ApiError}.
 */
import { currentToken } from "./auth";
import type { Job, ProgressEvent, QueryParams, RequestJson, ResponseJson, User, Video, VideoList } from "./types";

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

async function request<T>(method: string, path: string, body?: BodyInit | object | null, headers: Record<string, string> = {}): Promise<T> {
  const h: Record<string, string> = { Accept: "application/json", ...headers };
  const token = currentToken();
  if (token) h.Authorization = `Bearer ${token}`;
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
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = (data ?? {}) as { code?: string; message?: string } & Record<string, unknown>;
    if (response.status === 401 && token && path !== "/api/auth/login") unauthorizedHandler?.();
    throw new ApiError(response.status, err.code ?? `http_${response.status}`, err.message ?? response.statusText, err);
  }
  return data as T;
}

export type ImportAccepted = ResponseJson<"/api/lists/{list_id}/videos/bulk", "post", 202>;

export type CancelResult = ResponseJson<"/api/jobs/{job_id}/cancel", "post">;

export type HistoryPage = Omit<ResponseJson<"/api/jobs/{job_id}/progress-history", "get">, "events"> & {
  events: ProgressEvent[];
};

export type LoginResult = ResponseJson<"/api/auth/login", "post">;
export type AuthOptions = ResponseJson<"/api/auth/options", "get">;
/** `GET /api/jobs?status=`: "active", "finished" or one job status. */
export type JobsFilter = NonNullable<QueryParams<"/api/jobs", "get">["status"]>;

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
  videos: async (listId: string): Promise<Video[]> =>
    (await request<{ videos: Video[] }>("GET", `/api/lists/${encodeURIComponent(listId)}/videos`)).videos,

  importCsvText: (listId: string, csv: string) =>
    request<ImportAccepted>("POST", `/api/lists/${encodeURIComponent(listId)}/videos/bulk`, csv, { "Content-Type": "text/csv" }),
  importCsvFile: (listId: string, file: File) => {
    const form = new FormData();
    form.append("file", file, file.name);
    return request<ImportAccepted>("POST", `/api/lists/${encodeURIComponent(listId)}/videos/bulk`, form);
  },
  uploadVideos: (listId: string, files: readonly File[]) => {
    const form = new FormData();
    for (const file of files) form.append("file", file, file.name);
    return request<ImportAccepted>("POST", `/api/lists/${encodeURIComponent(listId)}/videos/upload`, form);
  },

  jobs: async (status?: JobsFilter): Promise<Job[]> =>
    (await request<{ jobs: Job[] }>("GET", `/api/jobs${status ? `?status=${status}` : ""}`)).jobs,
  job: (id: string) => request<Job>("GET", `/api/jobs/${encodeURIComponent(id)}`),
  cancelJob: (id: string) => request<CancelResult>("POST", `/api/jobs/${encodeURIComponent(id)}/cancel`),
  cancelJobs: async (ids: readonly string[]): Promise<CancelResult[]> =>
    (
      await request<ResponseJson<"/api/jobs/cancel", "post">>("POST", "/api/jobs/cancel", {
        job_ids: [...ids],
      } satisfies RequestJson<"/api/jobs/cancel", "post">)
    ).results,
  deleteJob: (id: string) => request<void>("DELETE", `/api/jobs/${encodeURIComponent(id)}`),
  history: (id: string, afterSeq = 0, limit = 1000) =>
    request<HistoryPage>("GET", `/api/jobs/${encodeURIComponent(id)}/progress-history?after_seq=${afterSeq}&limit=${limit}`),

};

/** HistoryFetcher for the progress layer. */
export async function fetchHistoryEvents(jobId: string, afterSeq: number, limit: number): Promise<ProgressEvent[]> {
  return (await api.history(jobId, afterSeq, limit)).events;
}
