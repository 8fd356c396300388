/**
 * The page's one live region for the connection: always in the document (so screen
 * readers announce its changes), it says "Reconnecting..." with the time of the last
 * update while the connection is lost, and nothing while it works.
 */
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
  return (
    <div className="connection-live" role="status" aria-live="polite" data-testid="connection-live">
      {reconnecting && (
        <div className="reconnect-banner" data-testid="reconnect-banner">
          <strong>Reconnecting...</strong>{" "}
          {refusedForLoad ? "Too many open connections for this user; retrying. " : null}
          {lastUpdateAt !== null ? (
            <span data-testid="last-update">Last update at {formatTime(lastUpdateAt)}.</span>
          ) : (
            <span>No update received yet.</span>
          )}
        </div>
      )}
    </div>
  );
}
