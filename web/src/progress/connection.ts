/**
 * The one Socket.IO connection of a browser (owned by the leader tab): connects to
 * `SOCKETIO_PATH` on the page's own origin, feeds a {@link ProgressStore}, and keeps
 * it gapless by asking for what it missed (`resume`) on every connect, on `resync`
 * and on a seq gap (DESIGN.md sections 4 and 5).
 */
import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";

import type { ProgressEvent } from "../types";
import { fillGapsFromHistory, type HistoryFetcher } from "./history";
import {
  EVENT_PROGRESS,
  EVENT_RESUME,
  EVENT_RESYNC,
  EVENT_SNAPSHOT,
  REASON_INVALID_TOKEN,
  REFUSAL_CODES,
  RESUME_MAX_JOBS,
  SOCKETIO_PATH,
  type RefusalReason,
  type ResumeAck,
  type ResumeRequest,
} from "./protocol";
import type { ProgressStore } from "./store";
import { chooseTransports, type TransportName } from "./transport";

export const RECONNECT_DELAY_MS = 3000;
export const RECONNECT_DELAY_MAX_MS = 30000;
export const RECONNECT_JITTER = 0.5;
/** resume rounds in a row (truncated acks) before falling back to REST history. */
const MAX_RESUME_ROUNDS = 50;

export type ConnectionStatus =
  | "idle"
  | "connecting"
  | "connected"
  | "reconnecting"
  | "refused"
  | "closed";

export interface ConnectionState {
  status: ConnectionStatus;
  isConnected: boolean;
  /** True while the connection was lost (or refused for load) and is being retried. */
  reconnecting: boolean;
  /** The Engine.IO transport in use ("polling" / "websocket"), null when not connected. */
  transport: string | null;
  /** Why the server refused the last connect, if it did. */
  refusal: RefusalReason | null;
  /** Reconnection attempt number reported by the Manager (0 when connected). */
  reconnectAttempt: number;
}

export const INITIAL_CONNECTION_STATE: ConnectionState = {
  status: "idle",
  isConnected: false,
  reconnecting: false,
  transport: null,
  refusal: null,
  reconnectAttempt: 0,
};

export type SocketFactory = (opts: Partial<ManagerOptions & SocketOptions>) => Socket;

export interface ProgressConnectionOptions {
  store: ProgressStore;
  /** Read on every (re)connect so a refreshed token is used. */
  getToken: () => string | null;
  transports?: TransportName[];
  /** Called once when the server refuses the token: the user must log in again. */
  onAuthFailure?: () => void;
  /** REST fallback for a resume that fails or leaves a gap. */
  fetchHistory?: HistoryFetcher;
  /** How long to wait for a `resume` ack. */
  resumeTimeoutMs?: number;
  /** Socket factory; default socket.io-client's `io` (tests mock the module). */
  connect?: SocketFactory;
}

/** The options handed to `io()`: same origin, our path, token in `auth`, backoff. */
export function socketOptions(
  getToken: () => string | null,
  transports: TransportName[],
): Partial<ManagerOptions & SocketOptions> {
  return {
    path: SOCKETIO_PATH,
    // A function so every reconnect sends the current token.
    auth: (cb: (data: object) => void) => cb({ token: getToken() ?? "" }),
    transports,
    reconnection: true,
    reconnectionDelay: RECONNECT_DELAY_MS,
    reconnectionDelayMax: RECONNECT_DELAY_MAX_MS,
    randomizationFactor: RECONNECT_JITTER,
    // A fresh Manager per connection: never share one cached by URL with a stopped one.
    forceNew: true,
    autoConnect: false,
  };
}

const REFUSAL_REASONS = Object.keys(REFUSAL_CODES) as RefusalReason[];

function isRefusalReason(value: unknown): value is RefusalReason {
  return typeof value === "string" && Object.hasOwn(REFUSAL_CODES, value);
}

/** The refusal reason carried by a `connect_error`, or null for a transport error. */
export function refusalReason(err: unknown): RefusalReason | null {
  if (typeof err !== "object" || err === null) return null;
  const e = err as { message?: unknown; data?: unknown };
  const data = e.data as { code?: unknown; reason?: unknown } | undefined;
  if (data && typeof data === "object" && isRefusalReason(data.reason) && data.code === REFUSAL_CODES[data.reason]) {
    return data.reason;
  }
  // Tolerate servers that put the refusal in the message only.
  if (typeof e.message === "string") {
    const message = e.message;
    const found = REFUSAL_REASONS.find((reason) => message.includes(reason));
    if (found) return found;
  }
  return null;
}

export class ProgressConnection {
  private readonly options: ProgressConnectionOptions;
  private readonly store: ProgressStore;
  private socket: Socket | null = null;
  private state: ConnectionState = INITIAL_CONNECTION_STATE;
  private readonly listeners = new Set<(state: ConnectionState) => void>();
  private resumeRunning = false;
  private resumeAgain = false;
  /** Settles when the last `resume` request sent has been answered (or failed). */
  private resumeInFlight: Promise<void> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private refusedRetries = 0;
  private readonly pendingAcks = new Set<() => void>();
  private stopped = false;

  constructor(options: ProgressConnectionOptions) {
    this.options = options;
    this.store = options.store;
  }

  getState(): ConnectionState {
    return this.state;
  }

  /** Calls `listener` with the new state after every change; returns the unsubscribe. */
  subscribe(listener: (state: ConnectionState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Open the socket. Idempotent. */
  start(): void {
    if (this.socket) return;
    this.stopped = false;
    const factory: SocketFactory = this.options.connect ?? ((opts) => io(opts));
    const transports = this.options.transports ?? chooseTransports();
    const socket = factory(socketOptions(this.options.getToken, transports));
    this.socket = socket;
    this.wire(socket);
    this.setState({ status: "connecting" });
    socket.connect();
  }

  /** Close the socket for good (tab closing, log-out, losing leadership). */
  stop(): void {
    this.stopped = true;
    this.clearRetry();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.removeAllListeners();
      socket.io.removeAllListeners?.();
      socket.disconnect();
    }
    this.setState({ ...INITIAL_CONNECTION_STATE, status: "closed" });
  }

  /**
   * Ask the server for everything after our last seqs. Safe to call at any time: when
   * disconnected it happens on the next connect; while a resume runs it runs once more.
   */
  requestResume(): void {
    if (!this.socket?.connected) return;
    if (this.resumeRunning) {
      this.resumeAgain = true;
      return;
    }
    void this.runResume();
  }

  /**
   * Resume on behalf of another tab: returns every event after `jobs`' seqs (following
   * truncated acks). Rejects when not connected or the server does not answer.
   */
  async resumeFor(jobs: Record<string, number>): Promise<ProgressEvent[]> {
    const cursor = { ...jobs };
    const out: ProgressEvent[] = [];
    for (let round = 0; round < MAX_RESUME_ROUNDS; round++) {
      const ack = await this.emitResume(cursor);
      for (const ev of ack.events) {
        out.push(ev);
        if (ev.seq > (cursor[ev.job_id] ?? 0)) cursor[ev.job_id] = ev.seq;
      }
      if (!ack.truncated || ack.events.length === 0) break;
    }
    return out;
  }

  private wire(socket: Socket): void {
    socket.on("connect", () => {
      this.clearRetry();
      this.refusedRetries = 0;
      const engine = socket.io.engine;
      engine?.on?.("upgrade", () => this.setState({ transport: engine.transport?.name ?? null }));
      this.setState({
        status: "connected",
        isConnected: true,
        reconnecting: false,
        refusal: null,
        reconnectAttempt: 0,
        transport: engine?.transport?.name ?? null,
      });
      this.requestResume();
    });

    socket.on("disconnect", (reason: string) => {
      for (const fail of [...this.pendingAcks]) fail();
      if (this.stopped) return;
      this.setState({ status: "reconnecting", isConnected: false, reconnecting: true, transport: null });
      // A server-side disconnect is not retried by socket.io-client itself.
      if (reason === "io server disconnect") this.scheduleRetry(RECONNECT_DELAY_MS);
    });

    socket.on("connect_error", (err: Error) => {
      if (this.stopped) return;
      const reason = refusalReason(err);
      if (reason === REASON_INVALID_TOKEN) {
        this.setState({
          status: "refused",
          isConnected: false,
          reconnecting: false,
          refusal: reason,
          transport: null,
        });
        socket.disconnect();
        this.options.onAuthFailure?.();
        return;
      }
      if (socket.active) {
        // A transport error: the Manager retries by itself, with its backoff.
        this.setState({ status: "reconnecting", isConnected: false, reconnecting: true, transport: null });
        return;
      }
      // Refused by the server (too many connections, server unavailable, ...): final for
      // socket.io-client, so retry ourselves with the same backoff.
      this.setState({
        status: reason ? "refused" : "reconnecting",
        isConnected: false,
        reconnecting: true,
        refusal: reason,
        transport: null,
      });
      const delay = Math.min(RECONNECT_DELAY_MS * 2 ** this.refusedRetries, RECONNECT_DELAY_MAX_MS);
      this.refusedRetries += 1;
      this.scheduleRetry(jitter(delay));
    });

    socket.on(EVENT_SNAPSHOT, (payload: { jobs?: unknown }) => {
      const jobs = Array.isArray(payload?.jobs) ? payload.jobs : [];
      if (this.store.applySnapshot(jobs).length > 0) this.requestResume();
    });

    socket.on(EVENT_PROGRESS, (event: unknown) => {
      if (this.store.applyEvent(event) === "gap") this.requestResume();
    });

    socket.on(EVENT_RESYNC, () => this.requestResume());

    // Reconnection events fire on the Manager, not on the socket.
    socket.io.on("reconnect_attempt", (attempt: number) => {
      if (this.stopped) return;
      this.setState({ status: "reconnecting", reconnecting: true, reconnectAttempt: attempt });
    });
    socket.io.on("reconnect_failed", () => {
      if (this.stopped) return;
      this.setState({ status: "closed", reconnecting: false, isConnected: false });
    });
  }

  private async runResume(): Promise<void> {
    this.resumeRunning = true;
    try {
      let rounds = 0;
      for (;;) {
        this.resumeAgain = false;
        if (!this.socket?.connected) return;
        let ack: ResumeAck;
        try {
          ack = await this.emitResume(this.store.resumeRequest());
        } catch {
          // Reconnected meanwhile: ask again on the new connection.
          if (this.resumeAgain) continue;
          // No ack on a live connection (server trouble): the REST history fills gaps.
          if (this.socket?.connected) await this.fillFromHistory(this.store.gapJobs());
          return;
        }
        const gaps = this.store.applyEvents(ack.events);
        rounds += 1;
        if (ack.truncated && ack.events.length > 0 && rounds < MAX_RESUME_ROUNDS) continue;
        if (gaps.length > 0) await this.fillFromHistory(gaps);
        if (!this.resumeAgain) return;
      }
    } finally {
      this.resumeRunning = false;
    }
  }

  /**
   * One logical `resume`: split into requests of at most RESUME_MAX_JOBS jobs (the
   * server refuses bigger ones). Rejects on a lost connection, a timeout or an error ack.
   */
  private async emitResume(jobs: Record<string, number>): Promise<ResumeAck> {
    const ids = Object.keys(jobs);
    if (ids.length <= RESUME_MAX_JOBS) return this.emitResumeOnce(jobs);
    const out: ResumeAck = { events: [], truncated: false };
    for (let i = 0; i < ids.length; i += RESUME_MAX_JOBS) {
      const chunk: Record<string, number> = {};
      for (const id of ids.slice(i, i + RESUME_MAX_JOBS)) chunk[id] = jobs[id];
      const ack = await this.emitResumeOnce(chunk);
      out.events.push(...ack.events);
      out.truncated ||= ack.truncated;
    }
    return out;
  }

  /**
   * One `resume` request at a time per socket (the server answers a second one in flight
   * with `resume_in_progress`): each waits for the previous one's ack, timeout or failure.
   */
  private emitResumeOnce(jobs: Record<string, number>): Promise<ResumeAck> {
    const previous = this.resumeInFlight;
    // sent at once when none is in flight (the usual case), else after the previous one
    const turn = previous ? previous.then(() => this.emitResumeNow(jobs)) : this.emitResumeNow(jobs);
    const settled = turn.then(
      () => undefined,
      () => undefined,
    );
    this.resumeInFlight = settled;
    void settled.then(() => {
      if (this.resumeInFlight === settled) this.resumeInFlight = null;
    });
    return turn;
  }

  private emitResumeNow(jobs: Record<string, number>): Promise<ResumeAck> {
    const socket = this.socket;
    const timeoutMs = this.options.resumeTimeoutMs ?? 10000;
    return new Promise<ResumeAck>((resolve, reject) => {
      if (!socket?.connected) {
        reject(new Error("not connected"));
        return;
      }
      const done = (): void => {
        clearTimeout(timer);
        this.pendingAcks.delete(fail);
      };
      const fail = (): void => {
        done();
        reject(new Error("connection lost before the resume ack"));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error("resume timed out"));
      }, timeoutMs);
      // An ack of a packet sent before a disconnect never comes: fail it at disconnect.
      this.pendingAcks.add(fail);
      const request: ResumeRequest = { jobs };
      socket.emit(EVENT_RESUME, request, (ack: (Partial<ResumeAck> & { error?: unknown }) | undefined) => {
        done();
        if (!ack || typeof ack !== "object" || ack.error !== undefined || !Array.isArray(ack.events)) {
          reject(new Error(`resume refused: ${String(ack?.error ?? "bad ack")}`));
          return;
        }
        resolve({ events: ack.events, truncated: ack.truncated === true });
      });
    });
  }

  private fillFromHistory(jobIds: string[]): Promise<void> {
    return fillGapsFromHistory(this.store, jobIds, this.options.fetchHistory);
  }

  private scheduleRetry(delayMs: number): void {
    this.clearRetry();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped && this.socket && !this.socket.connected) this.socket.connect();
    }, delayMs);
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  private setState(patch: Partial<ConnectionState>): void {
    const next = { ...this.state, ...patch };
    const changed = (Object.keys(next) as (keyof ConnectionState)[]).some(
      (k) => next[k] !== this.state[k],
    );
    if (!changed) return;
    this.state = next;
    for (const listener of this.listeners) listener(next);
  }
}

/** `delay` +/- 50 %, like socket.io-client's own backoff. */
function jitter(delay: number): number {
  return Math.round(delay * (1 - RECONNECT_JITTER + Math.random() * 2 * RECONNECT_JITTER));
}
