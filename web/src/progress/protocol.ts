/**
 * The Socket.IO contract with the server (DESIGN.md section 5), written once for the
 * browser: the path, the event names, the refusal codes and reasons, and the limits the
 * client must respect. Every `export const` here has the same name and value as in
 * `socket_layer/protocol.py` (RESUME_MAX_JOBS: the default of the server's setting);
 * tests/test_wire_contract.py checks both ways, so keep each one a plain literal.
 */
import type { ProgressEvent } from "../types";

export const SOCKETIO_PATH = "/api/ws/progress";

// server -> client
export const EVENT_SNAPSHOT = "snapshot";
export const EVENT_PROGRESS = "progress";
export const EVENT_RESYNC = "resync";
// client -> server
export const EVENT_RESUME = "resume";

/** `resume` ack errors: this socket already has a resume in flight (the client sends one
 * at a time); the user's resume allowance is used up (the ack carries `retry_after`). */
export const ERROR_RESUME_IN_PROGRESS = "resume_in_progress";
export const ERROR_RESUME_RATE_LIMITED = "resume_rate_limited";

/** `connect_error` code of a refusal the client must act on (log in again, back off). */
export const REFUSAL_CODE = 1008;
export const REASON_INVALID_TOKEN = "invalid_token";
export const REASON_TOO_MANY_CONNECTIONS = "too_many_connections";
/** `connect_error` code when the server could not check the connection: retry later. */
export const UNAVAILABLE_CODE = 1011;
export const REASON_UNAVAILABLE = "unavailable";

/**
 * Job ids per `resume` request: the default of the server's RESUME_MAX_JOBS setting; the
 * client splits bigger requests. A server configured lower answers full-size requests
 * with an error, and the client then fills only the gaps it has seen from the REST
 * history: do not set RESUME_MAX_JOBS below this.
 */
export const RESUME_MAX_JOBS = 200;

export type RefusalReason =
  | typeof REASON_INVALID_TOKEN
  | typeof REASON_TOO_MANY_CONNECTIONS
  | typeof REASON_UNAVAILABLE;

/** The code each reason is sent with (`refusal()` on the server). */
export const REFUSAL_CODES: Readonly<Record<RefusalReason, number>> = {
  [REASON_INVALID_TOKEN]: REFUSAL_CODE,
  [REASON_TOO_MANY_CONNECTIONS]: REFUSAL_CODE,
  [REASON_UNAVAILABLE]: UNAVAILABLE_CODE,
};

/** `connect_error` data of a refusal. */
export interface RefusalData {
  code: number;
  reason: RefusalReason | string;
}

/** `snapshot` payload: the latest event of each active or recently finished job. */
export interface SnapshotPayload {
  jobs: ProgressEvent[];
}

/** `resume` request (job id -> last seq seen) and its ack. */
export interface ResumeRequest {
  jobs: Record<string, number>;
}
export interface ResumeAck {
  events: ProgressEvent[];
  truncated: boolean;
}
