/**
 * The messages the tabs of one user exchange over a BroadcastChannel: the leader relays
 * every event it applies and its connection state; a follower says hello (and gets the
 * leader's state), and asks the leader to `resume` for it.
 */
import type { ProgressEvent } from "../types";
import type { ConnectionState } from "./connection";
import type { JobProgress } from "./store";

/** The part of `BroadcastChannel` we use. */
export interface ChannelLike {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent) => void) | null;
  close(): void;
}

/** Messages between the tabs of one user. */
export type TabMessage =
  | { t: "hello"; from: string }
  | { t: "leader"; from: string }
  | { t: "state"; to: string; events: ProgressEvent[]; status: ConnectionState; lastUpdateAt: number | null }
  | { t: "event"; event: ProgressEvent }
  | { t: "status"; status: ConnectionState; lastUpdateAt: number | null }
  | { t: "resume"; from: string; id: number; jobs: Record<string, number> }
  | { t: "resume-result"; to: string; id: number; events: ProgressEvent[] | null }
  | { t: "auth-failed" };

/** The lock name of the election and the channel name, one pair per user. */
export function leaderLockName(scope: string): string {
  return `reeltrack-progress-leader:${scope}`;
}
export function channelName(scope: string): string {
  return `reeltrack-progress:${scope}`;
}

/** The event part of a job's progress, as relayed to the other tabs. */
export function stripJob(job: JobProgress): ProgressEvent {
  const { last_error: _e, last_error_title: _t, received_at: _r, ...event } = job;
  void _e;
  void _t;
  void _r;
  return event;
}

let tabCounter = 0;
/** A fresh id for this tab: the `from` and `to` of its messages. */
export function newTabId(): string {
  tabCounter += 1;
  const random =
    typeof crypto !== "undefined" && "randomUUID" in crypto
      ? crypto.randomUUID()
      : Math.random().toString(36).slice(2);
  return `${random}-${tabCounter}`;
}
