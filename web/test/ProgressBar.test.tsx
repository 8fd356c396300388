import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { ProgressBar, STATUS_COLORS } from "../src/components/ProgressBar";
import { ReconnectBanner } from "../src/components/ReconnectBanner";
import type { JobStatus } from "../src/types";
import { JOB_A, ev } from "./helpers";

function rgb(hex: string): string {
  const n = Number.parseInt(hex.slice(1), 16);
  return `rgb(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255})`;
}

const cases: [JobStatus, string, number, string][] = [
  ["pending", "Pending", 0, "grey"],
  ["processing", "Processing", 40, "blue"],
  ["completed", "Completed", 100, "green"],
  ["failed", "Failed", 30, "red"],
  ["cancelled", "Cancelled", 60, "amber"],
];

describe("ProgressBar", () => {
  it.each(cases)("renders a %s job with its badge, colour and numbers", (status, label, progress) => {
    const job = ev(JOB_A, 5, {
      status,
      progress,
      current_video: 4,
      total_videos: 10,
      message: `Processing video 4/10: 'Tutorial Title'`,
    });
    const { container } = render(<ProgressBar job={job} />);
    const bar = screen.getByRole("progressbar");
    expect(bar).toHaveAttribute("aria-valuenow", String(progress));
    expect(bar).toHaveAttribute("aria-valuemin", "0");
    expect(bar).toHaveAttribute("aria-valuemax", "100");
    expect(screen.getByTestId("status-badge")).toHaveTextContent(label);
    expect(screen.getByTestId("progress-percent")).toHaveTextContent(`${progress}%`);
    expect(screen.getByTestId("progress-count")).toHaveTextContent("4/10 videos");
    expect(screen.getByTestId("progress-message")).toHaveTextContent("Processing video 4/10: 'Tutorial Title'");
    const fill = container.querySelector(".progress-fill") as HTMLElement;
    expect(fill.style.width).toBe(`${progress}%`);
    expect(fill.style.backgroundColor).toBe(rgb(STATUS_COLORS[status]));
    expect(container.firstElementChild).toHaveAttribute("data-status", status);
    expect(screen.queryByRole("alert")).toBeNull();
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
    render(<ProgressBar job={job} />);
    expect(screen.getByRole("alert")).toHaveTextContent("broken.mp4: Invalid data found when processing input");
    expect(screen.getByTestId("progress-failed")).toHaveTextContent("1 failed");
  });

  it("keeps showing the last error after later successful videos", () => {
    const job = { ...ev(JOB_A, 6, { failed_videos: 1 }), last_error: "no video stream", last_error_title: "audio.mp3" };
    render(<ProgressBar job={job} />);
    expect(screen.getByRole("alert")).toHaveTextContent("audio.mp3: no video stream");
  });

  it("clamps the percentage into 0..100", () => {
    render(<ProgressBar job={ev(JOB_A, 2, { progress: 140 })} />);
    expect(screen.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100");
  });
});

describe("ReconnectBanner", () => {
  it("is hidden while connected", () => {
    render(<ReconnectBanner reconnecting={false} lastUpdateAt={Date.now()} />);
    expect(screen.queryByTestId("reconnect-banner")).toBeNull();
  });

  it("shows Reconnecting... with the time of the last update", () => {
    const at = new Date("2026-11-29T10:01:02Z").getTime();
    render(<ReconnectBanner reconnecting lastUpdateAt={at} />);
    expect(screen.getByRole("status")).toHaveTextContent("Reconnecting...");
    expect(screen.getByTestId("last-update")).toHaveTextContent(new Date(at).toLocaleTimeString());
  });
});
