/** Opt-in browser notifications when a watched job completes or fails. */
import type { JobProgress } from "./progress/store";

export const NOTIFY_KEY = "reeltrack.notify";

export function notificationsSupported(): boolean {
  return typeof Notification !== "undefined";
}

/** The user opted in AND the browser allows it. */
export function notificationsEnabled(): boolean {
  if (!notificationsSupported()) return false;
  try {
    return localStorage.getItem(NOTIFY_KEY) === "1" && Notification.permission === "granted";
  } catch {
    return false;
  }
}

/** Ask for permission; true when notifications are now on. */
export async function enableNotifications(): Promise<boolean> {
  if (!notificationsSupported()) return false;
  const permission = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
  if (permission !== "granted") return false;
  localStorage.setItem(NOTIFY_KEY, "1");
  return true;
}

export function disableNotifications(): void {
  localStorage.removeItem(NOTIFY_KEY);
}

/** What a notification says about a job besides its progress. */
export interface JobLabel {
  name: string;
  listName: string | null;
}

/**
 * Show the notification for a job that just finished (completed or failed only): it
 * names the job and its list, and a click opens the job's page via `open`.
 */
export function notifyFinished(job: JobProgress, label: JobLabel, open?: (path: string) => void): void {
  if (!notificationsEnabled()) return;
  if (job.status !== "completed" && job.status !== "failed") return;
  const title = `${label.name}: ${job.status === "completed" ? "completed" : "failed"}`;
  const failed = job.failed_videos > 0 ? `, ${job.failed_videos} failed` : "";
  const where = label.listName ? `List "${label.listName}". ` : "";
  const noun = job.total_videos === 1 ? "video" : "videos";
  try {
    // tag: one notification per job even if several tabs were leaders in turn
    const note = new Notification(title, {
      body: `${where}${job.processed_videos}/${job.total_videos} ${noun}${failed}.`,
      tag: `reeltrack-job-${job.job_id}`,
      data: { path: `/jobs/${job.job_id}` },
    });
    note.onclick = () => {
      window.focus();
      open?.(`/jobs/${job.job_id}`);
      note.close();
    };
  } catch {
    // some browsers only allow notifications from a service worker: stay silent
  }
}
