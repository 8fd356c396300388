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

/** Show the notification for a job that just finished (completed or failed only). */
export function notifyFinished(job: JobProgress): void {
  if (!notificationsEnabled()) return;
  if (job.status !== "completed" && job.status !== "failed") return;
  const title = job.status === "completed" ? "Job completed" : "Job failed";
  const failed = job.failed_videos > 0 ? `, ${job.failed_videos} failed` : "";
  try {
    // tag: one notification per job even if several tabs were leaders in turn
    new Notification(title, {
      body: `${job.processed_videos}/${job.total_videos} videos${failed}. ${job.message}`,
      tag: `reeltrack-job-${job.job_id}`,
    });
  } catch {
    // some browsers only allow notifications from a service worker: stay silent
  }
}
