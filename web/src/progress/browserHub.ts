/** Wires a {@link ProgressHub} to the real browser: Web Locks, BroadcastChannel, Socket.IO. */
import { ProgressConnection } from "./connection";
import type { HistoryFetcher } from "./history";
import type { LockManagerLike } from "./leaderElection";
import { ProgressHub } from "./progressHub";
import type { ChannelLike } from "./tabProtocol";
import { chooseTransports } from "./transport";

export interface BrowserHubOptions {
  /** One election and one channel per user. */
  userId: string;
  getToken: () => string | null;
  onAuthFailure?: () => void;
  fetchHistory?: HistoryFetcher;
}

/** The browser's lock manager and channel factory; null where missing. */
export function browserCrossTab(): {
  locks: LockManagerLike | null;
  openChannel: ((name: string) => ChannelLike) | null;
} {
  const openChannel =
    typeof BroadcastChannel === "undefined" ? null : (name: string) => new BroadcastChannel(name) as ChannelLike;
  const locks =
    typeof navigator !== "undefined" && navigator.locks ? (navigator.locks as unknown as LockManagerLike) : null;
  // Without a channel a follower would see nothing: then every tab is its own leader.
  return { locks: openChannel ? locks : null, openChannel };
}

export function createBrowserHub(options: BrowserHubOptions): ProgressHub {
  const { locks, openChannel } = browserCrossTab();
  return new ProgressHub({
    scope: options.userId,
    locks,
    openChannel,
    fetchHistory: options.fetchHistory,
    onAuthFailure: options.onAuthFailure,
    createConnection: (store, onAuthFailure) =>
      new ProgressConnection({
        store,
        getToken: options.getToken,
        transports: chooseTransports(),
        onAuthFailure,
        fetchHistory: options.fetchHistory,
      }),
  });
}
