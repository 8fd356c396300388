/**
 * The SPA's REST data, through TanStack Query: one client, the query keys, and the
 * hooks the pages use. Queries refetch on window focus and on reconnect, and a query's
 * error is gone as soon as it succeeds again; the live socket invalidates what it
 * makes stale (see useLiveInvalidation).
 */
import { type InvalidateQueryFilters, QueryClient, useInfiniteQuery, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef } from "react";

import { api, ApiError, type JobsQuery } from "./api";
import { useJobProgress } from "./progress/useJobProgress";
import { isFinalStatus, type ProgressEvent, type VideoStatus } from "./types";

export const JOBS_PAGE_SIZE = 20;
export const VIDEOS_PAGE_SIZE = 50;

export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 5_000,
        refetchOnWindowFocus: true,
        refetchOnReconnect: true,
        // a 404 stays a 404; anything else (server restarting, network) is tried again
        retry: (failures, error) => !(error instanceof ApiError && error.status < 500) && failures < 3,
      },
    },
  });
}

export const keys = {
  jobs: ["jobs"] as const,
  jobsListing: (filters: Omit<JobsQuery, "cursor">) => ["jobs", "listing", filters] as const,
  job: (id: string) => ["job", id] as const,
  history: (id: string) => ["history", id] as const,
  lists: ["lists"] as const,
  list: (id: string) => ["list", id] as const,
  videos: (listId: string) => ["videos", listId] as const,
  videosListing: (listId: string, status: VideoStatus | null) => ["videos", listId, status] as const,
};

/** `GET /api/jobs` with filters, newest first, one page at a time ("Load more"). */
export function useJobsListing(filters: Omit<JobsQuery, "cursor" | "limit">, enabled = true) {
  const f = { ...filters, limit: JOBS_PAGE_SIZE };
  return useInfiniteQuery({
    queryKey: keys.jobsListing(f),
    queryFn: ({ pageParam }) => api.jobsPage({ ...f, cursor: pageParam }),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.next_cursor,
    enabled,
  });
}

export function useJob(id: string) {
  return useQuery({ queryKey: keys.job(id), queryFn: () => api.job(id) });
}

export function useLists() {
  return useQuery({ queryKey: keys.lists, queryFn: api.lists });
}

/**
 * A refresh nobody asked for (the socket saw progress, it reconnected). It lets a fetch
 * in flight finish first — a "Load more" the user clicked — and then refetches: a plain
 * invalidation would cancel that page load (TanStack's default), and one that skips
 * fetches in flight (`cancelRefetch: false`) would keep data read before the change.
 */
export async function refreshInBackground(client: QueryClient, filters?: InvalidateQueryFilters): Promise<void> {
  for (let round = 0; round < 5 && client.isFetching(filters) > 0; round++) {
    const inFlight = client
      .getQueryCache()
      .findAll(filters)
      .map((query) => query.promise)
      .filter((p): p is Promise<unknown> => p !== undefined);
    await Promise.allSettled(inFlight);
  }
  await client.invalidateQueries(filters);
}


export function useList(id: string) {
  return useQuery({ queryKey: keys.list(id), queryFn: () => api.list(id) });
}

/** A list's videos, newest first, filtered by status, paged. */
export function useVideos(listId: string, status: VideoStatus | null, enabled = true) {
  return useInfiniteQuery({
    queryKey: keys.videosListing(listId, status),
    queryFn: ({ pageParam }) => api.videosPage(listId, { status, cursor: pageParam, limit: VIDEOS_PAGE_SIZE }),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.next_cursor,
    enabled,
  });
}

const HISTORY_PAGE = 1000;

/**
 * The whole event history of a job, read incrementally: each run fetches only what
 * follows the last seq already held (invalidate it when the socket reports more).
 */
export function useHistory(jobId: string) {
  const client = useQueryClient();
  return useQuery({
    queryKey: keys.history(jobId),
    queryFn: async () => {
      const held = client.getQueryData<ProgressEvent[]>(keys.history(jobId)) ?? [];
      let events = held;
      for (;;) {
        const after = events.length ? events[events.length - 1].seq : 0;
        const page = await api.history(jobId, after, HISTORY_PAGE);
        const fresh = page.events.filter((e) => e.seq > after);
        if (fresh.length) events = [...events, ...fresh];
        if (page.events.length < HISTORY_PAGE) return events;
      }
    },
  });
}

/** Cancel, delete and retry of a job; each refreshes what it changes. */
/** The most job ids one POST /api/jobs/cancel takes (BatchCancelIn). */
export const CANCEL_BATCH = 1000;

export function useJobActions() {
  const client = useQueryClient();
  const refresh = (id: string) => {
    void client.invalidateQueries({ queryKey: keys.jobs });
    void client.invalidateQueries({ queryKey: keys.job(id) });
    void client.invalidateQueries({ queryKey: ["videos"] });
  };
  const cancel = useMutation({ mutationFn: (id: string) => api.cancelJob(id), onSuccess: (_r, id) => refresh(id) });
  const remove = useMutation({
    mutationFn: (id: string) => api.deleteJob(id),
    onSuccess: (_r, id) => {
      client.removeQueries({ queryKey: keys.job(id) });
      refresh(id);
    },
  });
  const retry = useMutation({ mutationFn: (id: string) => api.retryJob(id), onSuccess: (_r, id) => refresh(id) });
  const cancelMany = useMutation({
    mutationFn: async (ids: readonly string[]) => {
      const results = [];
      // the API takes at most CANCEL_BATCH ids a request
      for (let i = 0; i < ids.length; i += CANCEL_BATCH) results.push(...(await api.cancelJobs(ids.slice(i, i + CANCEL_BATCH))));
      return results;
    },
    onSuccess: (_r, ids) => ids.forEach(refresh),
  });
  return { cancel, remove, retry, cancelMany };
}

/**
 * Keeps the REST data in step with the socket: a job the listings do not know yet, or
 * one that just finished, refreshes the job listings; a reconnect refreshes everything
 * (what failed while offline is read again, and its error goes away).
 */
export function useLiveInvalidation(): void {
  const client = useQueryClient();
  const { jobProgress, isConnected } = useJobProgress();
  const seen = useRef(new Map<string, boolean>());
  const wasConnected = useRef(isConnected);

  useEffect(() => {
    let stale = false;
    for (const [id, job] of jobProgress) {
      const final = isFinalStatus(job.status);
      const before = seen.current.get(id);
      if (before === undefined || (final && !before)) {
        stale = true;
        if (final) void refreshInBackground(client, { queryKey: keys.job(id) });
      }
      seen.current.set(id, final);
    }
    if (stale) void refreshInBackground(client, { queryKey: keys.jobs });
  }, [jobProgress, client]);

  useEffect(() => {
    if (isConnected && !wasConnected.current) void refreshInBackground(client);
    wasConnected.current = isConnected;
  }, [isConnected, client]);
}
