/**
 * The client-side progress state: the latest event of every job the dashboard shows,
 * kept gapless and in order (DESIGN.md section 4, point 6).
 *
 * Plain TypeScript with no socket or React dependency, so every rule here is unit
 * tested directly:
 *  - per job `lastSeq`; an event is applied only if `seq > lastSeq` (duplicates dropped);
 *  - an event with `seq > lastSeq + 1` is a gap: it is buffered (not applied) and the
 *    caller is told to resume; buffered events are applied in order once the gap fills;
 *  - a job seen for the first time is applied as is (its latest state is all the
 *    dashboard needs; the job page reads the full history over REST);
 *  - a job whose final event (completed / failed / cancelled) was applied is removed
 *    from the dashboard 5 minutes after that event; its lastSeq is kept as a tombstone
 *    so a late duplicate (a snapshot, a resume) cannot bring it back.
 */
import { isFinalStatus, type JobStatus, type ProgressEvent } from "../types";

/** 5 minutes: how long a finished job stays on the dashboard after its final event. */
export const FINISHED_JOB_TTL_MS = 5 * 60 * 1000;

/** The dashboard's view of one job: its latest event plus what it must not forget. */
export interface JobProgress extends ProgressEvent {
  /** The last non-null `error` seen for this job (a later success does not clear it). */
  last_error: string | null;
  /** Title of the video `last_error` belongs to. */
  last_error_title: string | null;
  /** Local time (ms) when this job last changed. */
  received_at: number;
}

export type ApplyResult = "applied" | "duplicate" | "gap" | "invalid";

export type AppliedListener = (job: JobProgress, previous: JobProgress | undefined) => void;

type TimerHandle = ReturnType<typeof setTimeout>;

export interface ProgressStoreOptions {
  now?: () => number;
  finishedTtlMs?: number;
}

const STATUSES: ReadonlySet<string> = new Set<JobStatus>([
  "pending",
  "processing",
  "completed",
  "failed",
  "cancelled",
]);

/** True when `value` looks like a progress event (the server validated it already). */
export function isProgressEvent(value: unknown): value is ProgressEvent {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.job_id === "string" &&
    typeof v.seq === "number" &&
    Number.isInteger(v.seq) &&
    v.seq >= 1 &&
    typeof v.status === "string" &&
    STATUSES.has(v.status)
  );
}

export class ProgressStore {
  private jobs: ReadonlyMap<string, JobProgress> = new Map();
  private readonly lastSeq = new Map<string, number>();
  private readonly pending = new Map<string, Map<number, ProgressEvent>>();
  private readonly removalTimers = new Map<string, TimerHandle>();
  private readonly listeners = new Set<() => void>();
  private readonly appliedListeners = new Set<AppliedListener>();
  private readonly now: () => number;
  private readonly finishedTtlMs: number;
  private lastUpdate: number | null = null;
  private batchDepth = 0;
  private dirty = false;

  constructor(options: ProgressStoreOptions = {}) {
    this.now = options.now ?? (() => Date.now());
    this.finishedTtlMs = options.finishedTtlMs ?? FINISHED_JOB_TTL_MS;
  }

  /** The jobs on the dashboard; a NEW Map after every change (never mutated). */
  getJobs(): ReadonlyMap<string, JobProgress> {
    return this.jobs;
  }

  /** Local time (ms) of the last applied event, or null before the first one. */
  get lastUpdateAt(): number | null {
    return this.lastUpdate;
  }

  /** The highest seq applied for `jobId` (0 when unknown). */
  getLastSeq(jobId: string): number {
    return this.lastSeq.get(jobId) ?? 0;
  }

  /** Jobs with buffered events waiting for a gap to be filled. */
  gapJobs(): string[] {
    return [...this.pending.entries()].filter(([, m]) => m.size > 0).map(([id]) => id);
  }

  /**
   * The `resume` payload: `{job_id: lastSeq}` for every job that can still change
   * (not final) and every job with a gap.
   */
  resumeRequest(): Record<string, number> {
    const jobs: Record<string, number> = {};
    for (const [id, job] of this.jobs) {
      if (!isFinalStatus(job.status)) jobs[id] = this.getLastSeq(id);
    }
    for (const id of this.gapJobs()) jobs[id] = this.getLastSeq(id);
    return jobs;
  }

  /** Calls `listener` after every change of `getJobs()`; returns the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` for every event that changed a job, in the order applied. */
  onApplied(listener: AppliedListener): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  /**
   * Apply one event. Returns "applied", "duplicate" (seq already seen), "gap" (buffered
   * until the missing seqs arrive: the caller must resume) or "invalid" (ignored).
   */
  applyEvent(event: unknown): ApplyResult {
    if (!isProgressEvent(event)) return "invalid";
    const id = event.job_id;
    const last = this.lastSeq.get(id);
    if (last !== undefined && event.seq <= last) return "duplicate";
    if (last !== undefined && event.seq > last + 1) {
      let buffered = this.pending.get(id);
      if (!buffered) {
        buffered = new Map();
        this.pending.set(id, buffered);
      }
      buffered.set(event.seq, event);
      return "gap";
    }
    this.batch(() => {
      this.commit(event);
      this.drain(id);
    });
    return "applied";
  }

  /**
   * Apply many events (a `snapshot`, a `resume` ack, a history page) in (job, seq)
   * order with one change notification. Returns the job ids still waiting on a gap.
   */
  applyEvents(events: readonly unknown[]): string[] {
    const valid = events.filter(isProgressEvent);
    valid.sort((a, b) => (a.job_id === b.job_id ? a.seq - b.seq : a.job_id < b.job_id ? -1 : 1));
    this.batch(() => {
      for (const event of valid) this.applyEvent(event);
    });
    return this.gapJobs();
  }

  /** A `snapshot`: the latest event of each active or recently finished job. */
  applySnapshot(jobs: readonly unknown[]): string[] {
    return this.applyEvents(jobs);
  }

  /**
   * Give up on filling the gap of `jobId` (its history is gone): apply the buffered
   * events in seq order as they are.
   */
  forceApplyPending(jobId: string): void {
    const buffered = this.pending.get(jobId);
    if (!buffered) return;
    this.pending.delete(jobId);
    const events = [...buffered.values()].sort((a, b) => a.seq - b.seq);
    this.batch(() => {
      for (const event of events) {
        if (event.seq > this.getLastSeq(jobId)) this.commit(event);
      }
    });
  }

  /** Remove a job from the dashboard now (its lastSeq is kept as a tombstone). */
  removeJob(jobId: string): void {
    this.clearTimer(jobId);
    this.pending.delete(jobId);
    if (!this.jobs.has(jobId)) return;
    const next = new Map(this.jobs);
    next.delete(jobId);
    this.jobs = next;
    this.changed();
  }

  /** Forget everything (log-out) and cancel the removal timers. */
  reset(): void {
    for (const id of [...this.removalTimers.keys()]) this.clearTimer(id);
    this.lastSeq.clear();
    this.pending.clear();
    this.lastUpdate = null;
    this.jobs = new Map();
    this.changed();
  }

  private commit(event: ProgressEvent): void {
    const id = event.job_id;
    const previous = this.jobs.get(id);
    const now = this.now();
    const job: JobProgress = {
      ...event,
      last_error: event.error ?? previous?.last_error ?? null,
      last_error_title: event.error ? event.video_title : (previous?.last_error_title ?? null),
      received_at: now,
    };
    this.lastSeq.set(id, event.seq);
    const next = new Map(this.jobs);
    next.set(id, job);
    this.jobs = next;
    this.lastUpdate = now;
    if (isFinalStatus(event.status)) {
      this.scheduleRemoval(id, event.created_at, now);
    } else {
      this.clearTimer(id);
    }
    for (const listener of this.appliedListeners) listener(job, previous);
    this.changed();
  }

  private drain(jobId: string): void {
    const buffered = this.pending.get(jobId);
    if (!buffered) return;
    for (;;) {
      const last = this.getLastSeq(jobId);
      for (const seq of [...buffered.keys()]) if (seq <= last) buffered.delete(seq);
      const next = buffered.get(last + 1);
      if (!next) break;
      buffered.delete(last + 1);
      this.commit(next);
    }
    if (buffered.size === 0) this.pending.delete(jobId);
  }

  private scheduleRemoval(jobId: string, createdAt: string, now: number): void {
    this.clearTimer(jobId);
    // Measured from the final event's own time (a snapshot after a reload carries jobs
    // that finished minutes ago), clamped to [0, TTL] so a skewed browser clock can never
    // keep a job longer than TTL after it arrived.
    const eventTime = Date.parse(createdAt);
    const due = Number.isNaN(eventTime) ? now + this.finishedTtlMs : eventTime + this.finishedTtlMs;
    const delay = Math.min(this.finishedTtlMs, Math.max(0, due - now));
    this.removalTimers.set(
      jobId,
      setTimeout(() => {
        this.removalTimers.delete(jobId);
        this.removeJob(jobId);
      }, delay),
    );
  }

  private clearTimer(jobId: string): void {
    const timer = this.removalTimers.get(jobId);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.removalTimers.delete(jobId);
    }
  }

  private batch(fn: () => void): void {
    this.batchDepth += 1;
    try {
      fn();
    } finally {
      this.batchDepth -= 1;
      if (this.batchDepth === 0 && this.dirty) {
        this.dirty = false;
        for (const listener of this.listeners) listener();
      }
    }
  }

  private changed(): void {
    if (this.batchDepth > 0) {
      this.dirty = true;
      return;
    }
    for (const listener of this.listeners) listener();
  }
}
