import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { JobDashboard } from "../src/components/JobDashboard";
import { VideoTable } from "../src/components/VideoTable";
import { formatDuration } from "../src/format";
import { notifyFinished, NOTIFY_KEY } from "../src/notifications";
import type { JobProgress } from "../src/progress/store";
import { parseRoute } from "../src/router";
import type { Video } from "../src/types";
import { JOB_A, JOB_B, ev } from "./helpers";

const api = vi.hoisted(() => ({
  cancelJob: vi.fn(async (id: string) => ({ job_id: id, result: "cancel_requested" })),
  cancelJobs: vi.fn(async (ids: string[]) => ids.map((id) => ({ job_id: id, result: "cancel_requested" }))),
}));
vi.mock("../src/api", () => ({ api }));

function job(id: string, seq: number, overrides: Partial<JobProgress> = {}): JobProgress {
  return { ...ev(id, seq), last_error: null, last_error_title: null, received_at: Date.now(), ...overrides };
}

describe("JobDashboard", () => {
  beforeEach(() => {
    api.cancelJob.mockClear();
    api.cancelJobs.mockClear();
  });

  it("cancels one job with its own button", async () => {
    render(<JobDashboard jobs={[job(JOB_A, 3), job(JOB_B, 2)]} />);
    const card = screen.getAllByTestId("job-card")[0];
    fireEvent.click(within(card).getByRole("button", { name: "Cancel" }));
    await waitFor(() => expect(api.cancelJob).toHaveBeenCalledWith(JOB_A));
    expect(api.cancelJobs).not.toHaveBeenCalled();
  });

  it("cancels the selected jobs in one request", async () => {
    render(<JobDashboard jobs={[job(JOB_A, 3), job(JOB_B, 2)]} />);
    const button = screen.getByTestId("cancel-selected");
    expect(button).toBeDisabled();
    fireEvent.click(screen.getByLabelText(`Select job ${JOB_A}`));
    fireEvent.click(screen.getByLabelText(`Select job ${JOB_B}`));
    expect(button).toHaveTextContent("Cancel selected (2)");
    fireEvent.click(button);
    await waitFor(() => expect(api.cancelJobs).toHaveBeenCalledWith([JOB_A, JOB_B]));
  });

  it("offers no cancel for finished jobs", () => {
    render(<JobDashboard jobs={[job(JOB_A, 12, { status: "completed", progress: 100 })]} />);
    expect(screen.queryByRole("button", { name: "Cancel" })).toBeNull();
    expect(screen.queryByRole("checkbox")).toBeNull();
  });

  it("shows the error of a failed video it only knows from the video table", () => {
    const finished = job(JOB_A, 12, { status: "completed", progress: 100, failed_videos: 1, processed_videos: 10 });
    render(
      <JobDashboard
        jobs={[finished]}
        failureOf={(id) => (id === JOB_A ? { title: "clip-02", error: "cannot decode video" } : undefined)}
      />,
    );
    expect(screen.getByRole("alert")).toHaveTextContent("clip-02: cannot decode video");
  });

  it("says so when there are no jobs", () => {
    render(<JobDashboard jobs={[]} />);
    expect(screen.getByTestId("dashboard")).toHaveTextContent("No active jobs.");
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
    notifyFinished(job(JOB_A, 12, { status: "completed", progress: 100 }));
    expect(shown).toHaveLength(0);
  });

  it("notifies completed and failed jobs once per job (tag)", () => {
    localStorage.setItem(NOTIFY_KEY, "1");
    notifyFinished(job(JOB_A, 12, { status: "completed", progress: 100 }));
    notifyFinished(job(JOB_B, 3, { status: "failed" }));
    notifyFinished(job(JOB_B, 4, { status: "cancelled" }));
    expect(shown.map((n) => n.title)).toEqual(["Job completed", "Job failed"]);
    expect(shown[0].options.tag).toBe(`reeltrack-job-${JOB_A}`);
  });
});

describe("router and formatting", () => {
  it("parses the app's paths", () => {
    expect(parseRoute("/")).toEqual({ name: "lists" });
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
