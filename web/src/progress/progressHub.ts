/**
 * One live connection per browser, not per tab.
 *
 * Every tab of a user runs a {@link ProgressHub}. The tabs elect a leader with a Web
 * Lock (`navigator.locks.request` holding a never-settling promise): the tab holding the
 * lock owns the only Socket.IO connection and relays every event it applies, and its
 * connection state, to the other tabs over a BroadcastChannel. Followers apply the
 * relayed events to their own {@link ProgressStore} (same dedupe and gap rules), and ask
 * the leader to `resume` for them when they see a gap (REST history if it does not
 * answer). When the leader tab closes, the browser releases its lock and the next
 * waiting tab becomes leader: it connects and resumes from the seqs its own store holds,
 * so no event is lost across the hand-over.
 *
 * The lock manager, the channel and the connection are injected, so all of this runs
 * in unit tests without a browser.
 */
import { isFinalStatus, type ProgressEvent } from "../types";
import { INITIAL_CONNECTION_STATE, type ConnectionState } from "./connection";
import { fillGapsFromHistory, type HistoryFetcher } from "./history";
import { LeaderElection, type LockManagerLike } from "./leaderElection";
import { ProgressStore, type JobProgress } from "./store";
import { channelName, leaderLockName, newTabId, stripJob, type ChannelLike, type TabMessage } from "./tabProtocol";

/** The part of {@link ProgressConnection} the hub uses. */
export interface ConnectionLike {
  start(): void;
  stop(): void;
  getState(): ConnectionState;
  subscribe(listener: (state: ConnectionState) => void): () => void;
  requestResume(): void;
  resumeFor(jobs: Record<string, number>): Promise<ProgressEvent[]>;
}

export type TabRole = "starting" | "leader" | "follower";

export interface HubState extends ConnectionState {
  jobs: ReadonlyMap<string, JobProgress>;
  /** Local time (ms) of the last event applied in this tab. */
  lastUpdateAt: number | null;
  role: TabRole;
}

export interface ProgressHubOptions {
  /** Suffix of the lock and channel names: one election per user. */
  scope: string;
  locks: LockManagerLike | null;
  openChannel: ((name: string) => ChannelLike) | null;
  createConnection: (store: ProgressStore, onAuthFailure: () => void) => ConnectionLike;
  store?: ProgressStore;
  fetchHistory?: HistoryFetcher;
  onAuthFailure?: () => void;
  /** How long a follower waits for the leader to answer a resume before using REST. */
  followerResumeTimeoutMs?: number;
  tabId?: string;
}

export type FinishedListener = (job: JobProgress) => void;

export class ProgressHub {
  readonly store: ProgressStore;
  readonly tabId: string;
  private readonly options: ProgressHubOptions;
  private readonly election: LeaderElection;
  private channel: ChannelLike | null = null;
  private connection: ConnectionLike | null = null;
  private connectionState: ConnectionState = INITIAL_CONNECTION_STATE;
  private remoteLastUpdate: number | null = null;
  private role: TabRole = "starting";
  private state: HubState;
  private readonly listeners = new Set<() => void>();
  private readonly finishedListeners = new Set<FinishedListener>();
  private readonly cleanups: (() => void)[] = [];
  private resumeId = 0;
  private pendingResume: { id: number; timer: ReturnType<typeof setTimeout> } | null = null;
  private started = false;

  constructor(options: ProgressHubOptions) {
    this.options = options;
    this.store = options.store ?? new ProgressStore();
    this.tabId = options.tabId ?? newTabId();
    this.election = new LeaderElection({
      locks: options.locks,
      name: leaderLockName(options.scope),
      onAcquire: () => this.becomeLeader(),
    });
    this.state = this.computeState();
  }

  getState(): HubState {
    return this.state;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called in the leader tab when a job it watched live reaches a final status. */
  onFinished(listener: FinishedListener): () => void {
    this.finishedListeners.add(listener);
    return () => this.finishedListeners.delete(listener);
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.cleanups.push(this.store.subscribe(() => this.refresh()));
    this.cleanups.push(
      this.store.onApplied((job, previous) => {
        if (this.role !== "leader") return;
        this.post({ t: "event", event: stripJob(job) });
        if (previous && !isFinalStatus(previous.status) && isFinalStatus(job.status)) {
          for (const listener of this.finishedListeners) listener(job);
        }
      }),
    );
    if (this.options.openChannel) {
      const channel = this.options.openChannel(channelName(this.options.scope));
      channel.onmessage = (ev: MessageEvent) => this.onMessage(ev.data as TabMessage);
      this.channel = channel;
    }
    this.role = "follower";
    this.refresh();
    this.post({ t: "hello", from: this.tabId });
    this.election.start();
  }

  /** Leave: close the socket (if leader), give up the lock, close the channel. */
  stop(): void {
    if (!this.started) return;
    this.started = false;
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    if (this.pendingResume) clearTimeout(this.pendingResume.timer);
    this.pendingResume = null;
    this.connection?.stop();
    this.connection = null;
    this.election.stop();
    if (this.channel) {
      this.channel.onmessage = null;
      this.channel.close();
      this.channel = null;
    }
    this.role = "starting";
    this.connectionState = INITIAL_CONNECTION_STATE;
    this.refresh();
  }

  /** Ask for everything missed (leader: over the socket; follower: via the leader). */
  requestResume(): void {
    if (this.role === "leader") this.connection?.requestResume();
    else if (this.role === "follower") this.followerResume();
  }

  private becomeLeader(): void {
    if (!this.started) return;
    this.role = "leader";
    if (this.pendingResume) clearTimeout(this.pendingResume.timer);
    this.pendingResume = null;
    const connection = this.options.createConnection(this.store, () => this.authFailed());
    this.connection = connection;
    this.cleanups.push(
      connection.subscribe((state) => {
        this.connectionState = state;
        this.post({ t: "status", status: state, lastUpdateAt: this.store.lastUpdateAt });
        this.refresh();
      }),
    );
    this.connectionState = connection.getState();
    this.post({ t: "leader", from: this.tabId });
    this.refresh();
    // Connects and resumes from the seqs this tab's store already holds.
    connection.start();
  }

  private authFailed(): void {
    this.post({ t: "auth-failed" });
    this.options.onAuthFailure?.();
  }

  private onMessage(message: TabMessage): void {
    if (!this.started || typeof message !== "object" || message === null) return;
    switch (message.t) {
      case "hello":
        if (this.role === "leader") {
          this.post({
            t: "state",
            to: message.from,
            events: [...this.store.getJobs().values()].map(stripJob),
            status: this.connectionState,
            lastUpdateAt: this.store.lastUpdateAt,
          });
        }
        return;
      case "leader":
        // A new leader: sync our state with it (it relays only what it applies from now).
        if (this.role !== "leader") this.post({ t: "hello", from: this.tabId });
        return;
      case "state":
        if (message.to !== this.tabId || this.role === "leader") return;
        this.setRemoteStatus(message.status, message.lastUpdateAt);
        if (this.store.applySnapshot(message.events).length > 0) this.followerResume();
        return;
      case "event":
        if (this.role === "leader") return;
        if (this.store.applyEvent(message.event) === "gap") this.followerResume();
        return;
      case "status":
        if (this.role === "leader") return;
        this.setRemoteStatus(message.status, message.lastUpdateAt);
        return;
      case "resume":
        if (this.role === "leader") this.answerResume(message.from, message.id, message.jobs);
        return;
      case "resume-result":
        if (message.to !== this.tabId || this.role === "leader") return;
        if (!this.pendingResume || this.pendingResume.id !== message.id) return;
        clearTimeout(this.pendingResume.timer);
        this.pendingResume = null;
        if (message.events === null) {
          void this.followerHistoryFallback();
          return;
        }
        if (this.store.applyEvents(message.events).length > 0) void this.followerHistoryFallback();
        return;
      case "auth-failed":
        if (this.role !== "leader") this.options.onAuthFailure?.();
        return;
    }
  }

  private answerResume(to: string, id: number, jobs: Record<string, number>): void {
    const connection = this.connection;
    if (!connection) return;
    connection.resumeFor(jobs).then(
      (events) => this.post({ t: "resume-result", to, id, events }),
      () => this.post({ t: "resume-result", to, id, events: null }),
    );
  }

  /** A follower's gap: ask the leader; fall back to REST if it does not answer. */
  private followerResume(): void {
    if (this.pendingResume) return;
    const jobs: Record<string, number> = {};
    for (const id of this.store.gapJobs()) jobs[id] = this.store.getLastSeq(id);
    if (Object.keys(jobs).length === 0) return;
    this.resumeId += 1;
    const id = this.resumeId;
    const timer = setTimeout(() => {
      if (this.pendingResume?.id !== id) return;
      this.pendingResume = null;
      void this.followerHistoryFallback();
    }, this.options.followerResumeTimeoutMs ?? 5000);
    this.pendingResume = { id, timer };
    this.post({ t: "resume", from: this.tabId, id, jobs });
  }

  private async followerHistoryFallback(): Promise<void> {
    await fillGapsFromHistory(this.store, this.store.gapJobs(), this.options.fetchHistory);
  }

  private setRemoteStatus(status: ConnectionState, lastUpdateAt: number | null): void {
    this.connectionState = status;
    this.remoteLastUpdate = lastUpdateAt;
    this.refresh();
  }

  private post(message: TabMessage): void {
    try {
      this.channel?.postMessage(message);
    } catch {
      // a closed channel (tab going away): nothing to tell
    }
  }

  private computeState(): HubState {
    const local = this.store.lastUpdateAt;
    const remote = this.remoteLastUpdate;
    const lastUpdateAt = local === null ? remote : remote === null ? local : Math.max(local, remote);
    return {
      ...this.connectionState,
      jobs: this.store.getJobs(),
      lastUpdateAt,
      role: this.role,
    };
  }

  private refresh(): void {
    const next = this.computeState();
    const prev = this.state;
    const same =
      prev.jobs === next.jobs &&
      prev.lastUpdateAt === next.lastUpdateAt &&
      prev.role === next.role &&
      prev.status === next.status &&
      prev.isConnected === next.isConnected &&
      prev.reconnecting === next.reconnecting &&
      prev.transport === next.transport &&
      prev.refusal === next.refusal &&
      prev.reconnectAttempt === next.reconnectAttempt;
    if (same) return;
    this.state = next;
    for (const listener of this.listeners) listener();
  }
}
