/** "Reconnecting..." with the time of the last update, shown while disconnected. */
export interface ReconnectBannerProps {
  reconnecting: boolean;
  lastUpdateAt: number | null;
  /** Refused by the server for load (too many connections). */
  refusedForLoad?: boolean;
}

export function formatTime(ms: number): string {
  return new Date(ms).toLocaleTimeString();
}

export function ReconnectBanner({ reconnecting, lastUpdateAt, refusedForLoad }: ReconnectBannerProps) {
  if (!reconnecting) return null;
  return (
    <div className="reconnect-banner" role="status" aria-live="polite" data-testid="reconnect-banner">
      <strong>Reconnecting...</strong>{" "}
      {refusedForLoad ? "Too many open connections for this user; retrying. " : null}
      {lastUpdateAt !== null ? (
        <span data-testid="last-update">Last update at {formatTime(lastUpdateAt)}.</span>
      ) : (
        <span>No update received yet.</span>
      )}
    </div>
  );
}
