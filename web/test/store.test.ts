import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { FINISHED_JOB_TTL_MS, ProgressStore } from "../src/progress/store";
import { JOB_A, JOB_B, ev } from "./helpers";

describe("ProgressStore: event application", () => {
  it("applies events in order and drops duplicates", () => {
    const store = new ProgressStore();
    expect(store.applyEvent(ev(JOB_A, 1))).toBe("applied");
    expect(store.applyEvent(ev(JOB_A, 2))).toBe("applied");
    expect(store.applyEvent(ev(JOB_A, 2, { message: "replayed" }))).toBe("duplicate");
    expect(store.applyEvent(ev(JOB_A, 1))).toBe("duplicate");
    expect(store.getLastSeq(JOB_A)).toBe(2);
    expect(store.getJobs().get(JOB_A)?.message).toBe("event 2");
  });

  it("applies the first event of an unknown job at any seq", () => {
    const store = new ProgressStore();
    expect(store.applyEvent(ev(JOB_A, 7))).toBe("applied");
    expect(store.getLastSeq(JOB_A)).toBe(7);
  });

  it("ignores malformed events", () => {
    const store = new ProgressStore();
    expect(store.applyEvent({ job_id: JOB_A })).toBe("invalid");
    expect(store.applyEvent(null)).toBe("invalid");
    expect(store.applyEvent({ ...ev(JOB_A, 1), status: "exploded" })).toBe("invalid");
    expect(store.getJobs().size).toBe(0);
  });

  it("buffers an event after a gap and applies it once the gap is filled", () => {
    const store = new ProgressStore();
    const applied: number[] = [];
    store.onApplied((job) => applied.push(job.seq));
    store.applyEvent(ev(JOB_A, 1));
    store.applyEvent(ev(JOB_A, 2));
    expect(store.applyEvent(ev(JOB_A, 5))).toBe("gap");
    expect(store.getLastSeq(JOB_A)).toBe(2);
    expect(store.getJobs().get(JOB_A)?.seq).toBe(2);
    expect(store.gapJobs()).toEqual([JOB_A]);
    expect(store.resumeRequest()).toEqual({ [JOB_A]: 2 });

    // The resume answer arrives out of order and overlapping: still applied in seq order.
    const gaps = store.applyEvents([ev(JOB_A, 4), ev(JOB_A, 2), ev(JOB_A, 3)]);
    expect(gaps).toEqual([]);
    expect(store.getLastSeq(JOB_A)).toBe(5);
    expect(applied).toEqual([1, 2, 3, 4, 5]);
  });

  it("keeps a gap open until every missing seq arrived", () => {
    const store = new ProgressStore();
    store.applyEvent(ev(JOB_A, 1));
    store.applyEvent(ev(JOB_A, 4));
    expect(store.applyEvents([ev(JOB_A, 2)])).toEqual([JOB_A]);
    expect(store.getLastSeq(JOB_A)).toBe(2);
    store.applyEvent(ev(JOB_A, 3));
    expect(store.getLastSeq(JOB_A)).toBe(4);
    expect(store.gapJobs()).toEqual([]);
  });

  it("forceApplyPending gives up a gap the history cannot fill", () => {
    const store = new ProgressStore();
    store.applyEvent(ev(JOB_A, 1));
    store.applyEvent(ev(JOB_A, 6));
    store.applyEvent(ev(JOB_A, 4));
    store.forceApplyPending(JOB_A);
    expect(store.getLastSeq(JOB_A)).toBe(6);
    expect(store.gapJobs()).toEqual([]);
  });

  it("remembers the last error of a job after later successes", () => {
    const store = new ProgressStore();
    store.applyEvent(ev(JOB_A, 1));
    store.applyEvent(ev(JOB_A, 2, { error: "moov atom not found", video_title: "broken.mp4", failed_videos: 1, processed_videos: 1 }));
    store.applyEvent(ev(JOB_A, 3, { failed_videos: 1 }));
    const job = store.getJobs().get(JOB_A);
    expect(job?.error).toBeNull();
    expect(job?.last_error).toBe("moov atom not found");
    expect(job?.last_error_title).toBe("broken.mp4");
  });

  it("replaces the jobs Map on every change and notifies once per batch", () => {
    const store = new ProgressStore();
    const listener = vi.fn();
    store.subscribe(listener);
    const before = store.getJobs();
    store.applyEvents([ev(JOB_A, 1), ev(JOB_B, 1), ev(JOB_A, 2)]);
    expect(listener).toHaveBeenCalledTimes(1);
    const after = store.getJobs();
    expect(after).not.toBe(before);
    expect(before.size).toBe(0);
    expect(after.size).toBe(2);
    store.applyEvent(ev(JOB_A, 2)); // duplicate: no change, no notification
    expect(listener).toHaveBeenCalledTimes(1);
    expect(store.getJobs()).toBe(after);
  });

  it("asks to resume only jobs that can still change", () => {
    const store = new ProgressStore();
    store.applyEvent(ev(JOB_A, 3));
    store.applyEvent(ev(JOB_B, 12, { status: "completed", progress: 100 }));
    expect(store.resumeRequest()).toEqual({ [JOB_A]: 3 });
  });
});

describe("ProgressStore: snapshot", () => {
  it("applies the latest events and ignores older ones", () => {
    const store = new ProgressStore();
    store.applyEvent(ev(JOB_A, 4));
    const gaps = store.applySnapshot([ev(JOB_A, 3), ev(JOB_B, 9)]);
    expect(gaps).toEqual([]);
    expect(store.getLastSeq(JOB_A)).toBe(4);
    expect(store.getLastSeq(JOB_B)).toBe(9);
  });

  it("treats a snapshot ahead of a known job as a gap to fill", () => {
    const store = new ProgressStore();
    store.applyEvent(ev(JOB_A, 2));
    expect(store.applySnapshot([ev(JOB_A, 6)])).toEqual([JOB_A]);
    expect(store.resumeRequest()).toEqual({ [JOB_A]: 2 });
  });
});

describe("ProgressStore: finished jobs leave the dashboard after 5 minutes", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date("2026-11-29T10:00:00Z"));
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("removes a completed job 5 minutes after its final event", () => {
    const store = new ProgressStore();
    store.applyEvent(ev(JOB_A, 1));
    store.applyEvent(ev(JOB_A, 2, { status: "completed", progress: 100 }));
    store.applyEvent(ev(JOB_B, 1));
    vi.advanceTimersByTime(FINISHED_JOB_TTL_MS - 1);
    expect(store.getJobs().has(JOB_A)).toBe(true);
    vi.advanceTimersByTime(1);
    expect(store.getJobs().has(JOB_A)).toBe(false);
    expect(store.getJobs().has(JOB_B)).toBe(true); // still active: stays
    vi.advanceTimersByTime(60 * FINISHED_JOB_TTL_MS);
    expect(store.getJobs().has(JOB_B)).toBe(true);
  });

  it.each(["failed", "cancelled"] as const)("removes a %s job too", (status) => {
    const store = new ProgressStore();
    store.applyEvent(ev(JOB_A, 3, { status }));
    vi.advanceTimersByTime(FINISHED_JOB_TTL_MS);
    expect(store.getJobs().size).toBe(0);
  });

  it("does not bring a removed job back from a late snapshot or resume", () => {
    const store = new ProgressStore();
    const final = ev(JOB_A, 11, { status: "completed", progress: 100 });
    store.applyEvent(final);
    vi.advanceTimersByTime(FINISHED_JOB_TTL_MS);
    expect(store.applySnapshot([final])).toEqual([]);
    expect(store.applyEvents([ev(JOB_A, 10), final])).toEqual([]);
    expect(store.getJobs().size).toBe(0);
  });

  it("counts from the final event's time for a job that finished before the page loaded", () => {
    const store = new ProgressStore();
    const fourMinutesAgo = new Date(Date.now() - 4 * 60 * 1000).toISOString();
    store.applySnapshot([ev(JOB_A, 11, { status: "completed", progress: 100, created_at: fourMinutesAgo })]);
    vi.advanceTimersByTime(59 * 1000);
    expect(store.getJobs().has(JOB_A)).toBe(true);
    vi.advanceTimersByTime(1000);
    expect(store.getJobs().has(JOB_A)).toBe(false);
  });

  it("never keeps a job longer than 5 minutes after it arrived, whatever the clock says", () => {
    const store = new ProgressStore();
    const future = new Date(Date.now() + 60 * 60 * 1000).toISOString();
    store.applyEvent(ev(JOB_A, 2, { status: "failed", created_at: future }));
    vi.advanceTimersByTime(FINISHED_JOB_TTL_MS);
    expect(store.getJobs().size).toBe(0);
  });

  it("reset cancels pending removals", () => {
    const store = new ProgressStore();
    store.applyEvent(ev(JOB_A, 2, { status: "completed", progress: 100 }));
    store.reset();
    expect(vi.getTimerCount()).toBe(0);
  });
});
