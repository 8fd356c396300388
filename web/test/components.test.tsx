import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { QueryClient, QueryClientProvider } from "@tanstack/react-query";

import { JobCard } from "../src/components/JobCard";
import { VideoTable } from "../src/components/VideoTable";
import { formatDuration } from "../src/format";
import { cancelSummary, jobName, jobView, outcomeText, plural } from "../src/jobView";
import { notifyFinished, NOTIFY_KEY } from "../src/notifications";
import type { JobProgress } from "../src/progress/store";
import { parseRoute } from "../src/router";
import type { Job, Video } from "../src/types";
import { JOB_A, JOB_B, ev } from "./helpers";

const api = vi.hoisted(() => ({
  cancelJob: vi.fn(async (id: string) => ({ job_id: id, result: "cancel_requested" })),
  deleteJob: vi.fn(async () => undefined),
  retryJob: vi.fn(async () => ({ job_id: "retry-job" })),
}));
vi.mock("../src/api", async (importOriginal) => ({ ...(await importOriginal<typeof import("../src/api")>()), api }));

function job(id: string, seq: number, overrides: Partial<JobProgress> = {}): JobProgress {
  return { ...ev(id, seq), last_error: null, last_error_title: null, received_at: Date.now(), ...overrides };
}

const REST_JOB: Job = {
  id: JOB_A,
  list_id: "l1",
  list_name: "Holiday clips",
  name: "CSV import · 10 videos",
  source: "csv",
  priority: "normal",
  retry_of_id: null,
  retryable_videos: 0,
  status: "processing",
  total_videos: 10,
  processed_videos: 2,
  failed_videos: 0,
  last_seq: 3,
  cancel_requested: false,
  created_at: "2026-12-01T10:00:00Z",
  started_at: "2026-12-01T10:00:01Z",
  finished_at: null,
  latest_event: ev(JOB_A, 3),
};

function renderCard(view: ReturnType<typeof jobView>) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <QueryClientProvider client={client}>
      <ul>
        <JobCard view={view} />
      </ul>
    </QueryClientProvider>,
  );
}

describe("JobCard", () => {
  beforeEach(() => {
    api.cancelJob.mockClear();
    api.deleteJob.mockClear();
    api.retryJob.mockClear();
  });

  it("shows the job's name, its list and the live progress newer than the REST record", () => {
    renderCard(jobView(JOB_A, REST_JOB, job(JOB_A, 6)));
    const card = screen.getByTestId("job-card");
    expect(within(card).getByRole("link", { name: "CSV import · 10 videos" })).toHaveAttribute("href", `/jobs/${JOB_A}`);
    expect(within(card).getByRole("link", { name: "Holiday clips" })).toHaveAttribute("href", "/lists/l1");
    expect(within(card).getByTestId("progress-count")).toHaveTextContent("5/10 videos");
    expect(card).toHaveTextContent("Started");
  });

  it("has a checkbox named for the job only where several jobs can be picked", () => {
    const onToggle = vi.fn();
    const client = new QueryClient();
    const view = jobView(JOB_A, REST_JOB, undefined);
    const { rerender } = render(
      <QueryClientProvider client={client}>
        <ul>
          <JobCard view={view} selection={{ selected: false, onToggle }} />
        </ul>
      </QueryClientProvider>,
    );
    const box = screen.getByRole("checkbox", { name: "Select CSV import · 10 videos" });
    expect(box).not.toBeChecked();
    fireEvent.click(box);
    expect(onToggle).toHaveBeenCalledWith(JOB_A, true);
    rerender(
      <QueryClientProvider client={client}>
        <ul>
          <JobCard view={view} />
        </ul>
      </QueryClientProvider>,
    );
    expect(screen.queryByRole("checkbox")).toBeNull();
  });

  it("keeps the REST state when the live event is older", () => {
    renderCard(jobView(JOB_A, { ...REST_JOB, latest_event: ev(JOB_A, 8) }, job(JOB_A, 4)));
    expect(screen.getByTestId("progress-count")).toHaveTextContent("7/10 videos");
  });

  it("cancels an active job and offers no retry", async () => {
    renderCard(jobView(JOB_A, REST_JOB, undefined));
    expect(screen.queryByRole("button", { name: /Retry failed/ })).toBeNull();
    fireEvent.click(screen.getByRole("button", { name: "Cancel" }));
    await waitFor(() => expect(api.cancelJob).toHaveBeenCalledWith(JOB_A));
  });

  it("retries the failed videos of a finished job", async () => {
    const done = ev(JOB_A, 12, { status: "completed", progress: 100, processed_videos: 10, failed_videos: 2 });
    renderCard(jobView(JOB_A, { ...REST_JOB, status: "completed", failed_videos: 2, retryable_videos: 2, latest_event: done }, undefined));
    expect(screen.queryByRole("button", { name: "Cancel" })).toBeNull();
    expect(screen.getByTestId("progress-message")).toHaveTextContent("8 of 10 videos ready, 2 failed");
    fireEvent.click(screen.getByRole("button", { name: "Retry failed (2)" }));
    await waitFor(() => expect(api.retryJob).toHaveBeenCalledWith(JOB_A));
  });

  it("deletes only after the user confirms", async () => {
    const confirm = vi.spyOn(window, "confirm").mockReturnValueOnce(false).mockReturnValueOnce(true);
    renderCard(jobView(JOB_A, REST_JOB, undefined));
    fireEvent.click(screen.getByRole("button", { name: "Delete" }));
    expect(confirm).toHaveBeenCalledWith(expect.stringContaining("CSV import · 10 videos"));
    expect(api.deleteJob).not.toHaveBeenCalled();
    fireEvent.click(screen.getByRole("button", { name: "Delete" }));
    await waitFor(() => expect(api.deleteJob).toHaveBeenCalledWith(JOB_A));
  });

  it("shows a refused action as a sentence, not a raw error", async () => {
    api.retryJob.mockRejectedValueOnce(new TypeError("Failed to fetch"));
    const done = ev(JOB_A, 12, { status: "completed", progress: 100, processed_videos: 10, failed_videos: 1 });
    renderCard(jobView(JOB_A, { ...REST_JOB, status: "completed", failed_videos: 1, retryable_videos: 1, latest_event: done }, undefined));
    fireEvent.click(screen.getByRole("button", { name: "Retry failed (1)" }));
    const error = await screen.findByTestId("action-error");
    expect(error).toHaveTextContent("Cannot reach the server");
    expect(error).not.toHaveTextContent("Failed to fetch");
  });
});

describe("jobView wording", () => {
  it("counts right", () => {
    expect(plural(1, "video")).toBe("1 video");
    expect(plural(3, "video")).toBe("3 videos");
    expect(outcomeText({ status: "failed", total: 3, processed: 3, failed: 3, message: "" })).toBe("All 3 videos failed");
    expect(outcomeText({ status: "completed", total: 1, processed: 1, failed: 0, message: "" })).toBe("The video is ready");
  });

  it("sums up a batch cancel in one sentence", () => {
    expect(
      cancelSummary([{ result: "cancelled" }, { result: "cancelled" }, { result: "cancel_requested" }, { result: "already_finished" }]),
    ).toBe("2 jobs cancelled, 1 job stopping before its next video, 1 job had already finished.");
    expect(cancelSummary([{ result: "cancel_requested" }, { result: "cancel_requested" }, { result: "not_found" }])).toBe(
      "2 jobs stopping before their next video, 1 job no longer found.",
    );
    expect(cancelSummary([])).toBe("Nothing to cancel.");
  });

  it("names a job without a name by its id and size", () => {
    expect(jobName({ id: JOB_A, name: "", total_videos: 1 }, JOB_A)).toBe(`Job ${JOB_A.slice(0, 8)} · 1 video`);
  });
});

describe("VideoTable", () => {
  const video: Video = {
    id: "v1",
    list_id: "l1",
    job_id: null,
    position: 1,
    source: "https://example.com/tutorial.mp4",
    title: "Tutorial",
    status: "ready",
    duration_s: 125.4,
    width: 1920,
    height: 1080,
    fps: 30,
    video_codec: "h264",
    audio_codec: "aac",
    bitrate: 2_000_000,
    size_bytes: 31_000_000,
    thumbnail_url: "/api/videos/v1/thumbnail?u=x&sig=1",
    error: null,
    created_at: "2026-12-01T10:00:00.000Z",
    processed_at: "2026-12-01T10:00:05.000Z",
  };

  it("shows thumbnail, title, duration, resolution, codec, status and error", () => {
    render(
      <VideoTable
        videos={[
          video,
          { ...video, id: "v2", title: "Broken", status: "failed", thumbnail_url: null, error: "no video stream", duration_s: null, width: null, height: null, video_codec: null, audio_codec: null },
        ]}
      />,
    );
    const [ok, bad] = screen.getAllByTestId("video-row");
    expect(within(ok).getByRole("img")).toHaveAttribute("src", "/api/videos/v1/thumbnail?u=x&sig=1");
    expect(ok).toHaveTextContent("Tutorial");
    expect(ok).toHaveTextContent("2:05");
    expect(ok).toHaveTextContent("1920×1080");
    expect(ok).toHaveTextContent("h264 / aac");
    expect(ok).toHaveTextContent("ready");
    expect(bad).toHaveAttribute("data-status", "failed");
    expect(within(bad).getByTestId("video-error")).toHaveTextContent("no video stream");
  });

  it("keeps the first signed thumbnail URL of a video across refreshes", () => {
    const { rerender } = render(<VideoTable videos={[{ ...video, id: "v9", thumbnail_url: "/t?sig=1" }]} />);
    rerender(<VideoTable videos={[{ ...video, id: "v9", thumbnail_url: "/t?sig=2" }]} />);
    expect(screen.getByRole("img")).toHaveAttribute("src", "/t?sig=1");
  });
});

describe("notifications", () => {
  const shown: { title: string; options: NotificationOptions }[] = [];
  beforeEach(() => {
    shown.length = 0;
    class FakeNotification {
      static permission = "granted";
      static requestPermission = vi.fn(async () => "granted");
      constructor(title: string, options: NotificationOptions) {
        shown.push({ title, options });
      }
    }
    vi.stubGlobal("Notification", FakeNotification);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
    localStorage.clear();
  });

  it("stays silent until the user opted in", () => {
    notifyFinished(job(JOB_A, 12, { status: "completed", progress: 100 }), { name: "Upload · 3 files", listName: "Trips" });
    expect(shown).toHaveLength(0);
  });

  it("notifies completed and failed jobs once per job (tag)", () => {
    localStorage.setItem(NOTIFY_KEY, "1");
    const label = { name: "Upload · 3 files", listName: "Trips" };
    notifyFinished(job(JOB_A, 12, { status: "completed", progress: 100 }), label);
    notifyFinished(job(JOB_B, 3, { status: "failed" }), { name: "CSV import · 10 videos", listName: null });
    notifyFinished(job(JOB_B, 4, { status: "cancelled" }), label);
    expect(shown.map((n) => n.title)).toEqual(["Upload · 3 files: completed", "CSV import · 10 videos: failed"]);
    expect(shown[0].options.body).toContain('List "Trips"');
    expect(shown[0].options.tag).toBe(`reeltrack-job-${JOB_A}`);
    expect(shown[0].options.data).toEqual({ path: `/jobs/${JOB_A}` });
  });
});

describe("router and formatting", () => {
  it("parses the app's paths", () => {
    expect(parseRoute("/")).toEqual({ name: "jobs" });
    expect(parseRoute("/jobs")).toEqual({ name: "jobs" });
    expect(parseRoute("/lists")).toEqual({ name: "lists" });
    expect(parseRoute("/login")).toEqual({ name: "login" });
    expect(parseRoute("/lists/abc/")).toEqual({ name: "list", id: "abc" });
    expect(parseRoute("/jobs/j1")).toEqual({ name: "job", id: "j1" });
    expect(parseRoute("/nope/x")).toEqual({ name: "notfound", path: "/nope/x" });
  });

  it("formats durations", () => {
    expect(formatDuration(null)).toBe("—");
    expect(formatDuration(59.6)).toBe("1:00");
    expect(formatDuration(3725)).toBe("1:02:05");
  });
});
