import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { ProgressBar, STATUS_COLORS } from "../src/components/ProgressBar";
import { ReconnectBanner } from "../src/components/ReconnectBanner";
import { jobView } from "../src/jobView";
import type { JobProgress } from "../src/progress/store";
import type { JobStatus, ProgressEvent } from "../src/types";
import { JOB_A, ev } from "./helpers";

/** The view of a job known only from its live event. */
function live(event: ProgressEvent, extra: Partial<JobProgress> = {}) {
  return jobView(event.job_id, undefined, { last_error: null, last_error_title: null, received_at: 0, ...event, ...extra });
}

function rgb(hex: string): string {
  const n = Number.parseInt(hex.slice(1), 16);
  return `rgb(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255})`;
}

// [status, badge, event progress, shown percent, message shown]
const cases: [JobStatus, string, number, number, string][] = [
  ["pending", "Pending", 0, 0, "Waiting to start (10 videos)"],
  ["processing", "Processing", 40, 40, "Processing video 4/10: 'Tutorial Title'"],
  ["completed", "Completed", 100, 100, "All 10 videos are ready"],
  // a job that ran to its end shows 100 %, whatever the last event's number
  ["failed", "Failed", 30, 100, "Stopped: 4 of 10 videos ready, 0 failed"],
  ["cancelled", "Cancelled", 60, 60, "Cancelled after 4 of 10 videos"],
];

describe("ProgressBar", () => {
  it.each(cases)("renders a %s job with its badge, colour and numbers", (status, label, raw, progress, message) => {
    const job = ev(JOB_A, 5, {
      status,
      progress: raw,
      current_video: 4,
      processed_videos: 4,
      total_videos: 10,
      message: `Processing video 4/10: 'Tutorial Title'`,
    });
    const { container } = render(<ProgressBar view={live(job)} />);
    const bar = screen.getByRole("progressbar");
    expect(bar).toHaveAttribute("aria-valuenow", String(progress));
    expect(bar).toHaveAttribute("aria-valuemin", "0");
    expect(bar).toHaveAttribute("aria-valuemax", "100");
    expect(screen.getByTestId("status-badge")).toHaveTextContent(label);
    expect(screen.getByTestId("progress-percent")).toHaveTextContent(`${progress}%`);
    expect(screen.getByTestId("progress-count")).toHaveTextContent("4/10 videos");
    expect(screen.getByTestId("progress-message")).toHaveTextContent(message);
    const fill = container.querySelector(".progress-fill") as HTMLElement;
    expect(fill.style.width).toBe(`${progress}%`);
    expect(fill.style.backgroundColor).toBe(rgb(STATUS_COLORS[status]));
    expect(container.firstElementChild).toHaveAttribute("data-status", status);
    expect(screen.queryByTestId("progress-error")).toBeNull();
  });

  it("uses a distinct colour for every status", () => {
    expect(new Set(Object.values(STATUS_COLORS)).size).toBe(5);
  });

  it("shows the error of a failed video with its title and the failed count", () => {
    const job = ev(JOB_A, 4, {
      status: "processing",
      error: "Invalid data found when processing input",
      video_title: "broken.mp4",
      processed_videos: 3,
      failed_videos: 1,
    });
    render(<ProgressBar view={live(job)} />);
    // shown on the card, but no alert per card: the page has one live region
    expect(screen.queryByRole("alert")).toBeNull();
    expect(screen.getByTestId("progress-error")).toHaveTextContent("broken.mp4: Invalid data found when processing input");
    expect(screen.getByTestId("progress-failed")).toHaveTextContent("1 failed");
  });

  it("keeps showing the last error after later successful videos", () => {
    render(<ProgressBar view={live(ev(JOB_A, 6, { failed_videos: 1 }), { last_error: "no video stream", last_error_title: "audio.mp3" })} />);
    expect(screen.getByTestId("progress-error")).toHaveTextContent("audio.mp3: no video stream");
  });

  it("says 1 video, not 1 videos, and names the one failure of a one-video job", () => {
    const job = ev(JOB_A, 3, {
      status: "failed",
      progress: 99,
      total_videos: 1,
      current_video: 1,
      processed_videos: 1,
      failed_videos: 1,
      message: "All 1 videos failed",
      error: "cannot decode the video stream",
      video_title: "clip",
    });
    render(<ProgressBar view={live(job)} />);
    expect(screen.getByTestId("progress-percent")).toHaveTextContent("100%");
    expect(screen.getByTestId("progress-count")).toHaveTextContent("1/1 video");
    expect(screen.getByTestId("progress-count")).not.toHaveTextContent("videos");
    expect(screen.getByTestId("progress-message")).toHaveTextContent("The video failed");
    expect(screen.getByTestId("progress-error")).toHaveTextContent("clip: cannot decode the video stream");
  });

  it("clamps the percentage into 0..100", () => {
    render(<ProgressBar view={live(ev(JOB_A, 2, { progress: 140 }))} />);
    expect(screen.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100");
  });
});

describe("ReconnectBanner", () => {
  it("is an empty live region while connected", () => {
    render(<ReconnectBanner reconnecting={false} lastUpdateAt={Date.now()} />);
    expect(screen.queryByTestId("reconnect-banner")).toBeNull();
    expect(screen.getByRole("status")).toBeEmptyDOMElement();
    expect(screen.getByRole("status")).toHaveAttribute("aria-live", "polite");
  });

  it("shows Reconnecting... with the time of the last update", () => {
    const at = new Date("2026-11-29T10:01:02Z").getTime();
    render(<ReconnectBanner reconnecting lastUpdateAt={at} />);
    expect(screen.getByRole("status")).toHaveTextContent("Reconnecting...");
    expect(screen.getByTestId("last-update")).toHaveTextContent(new Date(at).toLocaleTimeString());
  });
});
