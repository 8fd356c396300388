import { afterEach, describe, expect, it, vi } from "vitest";

import { INITIAL_CONNECTION_STATE, type ConnectionState } from "../src/progress/connection";
import { ProgressHub, type ConnectionLike } from "../src/progress/progressHub";
import type { ProgressStore } from "../src/progress/store";
import type { ProgressEvent } from "../src/types";
import { FakeBus, FakeLocks, JOB_A, ev, flush } from "./helpers";

/**
 * Plays the server for the hub tests: the authoritative event log, and the live
 * connections that receive what is published (like the Socket.IO room of the user).
 */
class FakeServer {
  readonly log: ProgressEvent[] = [];
  readonly live = new Set<FakeConnection>();
  connectionsOpened = 0;
  /** When set, resume requests hang (a leader that cannot answer). */
  hangResume = false;

  publish(event: ProgressEvent): void {
    this.log.push(event);
    for (const conn of this.live) conn.deliver(event);
  }

  after(jobs: Record<string, number>): ProgressEvent[] {
    return this.log.filter((e) => e.job_id in jobs && e.seq > jobs[e.job_id]);
  }
}

/** A ConnectionLike with ProgressConnection's contract: resume on connect, gap -> resume. */
class FakeConnection implements ConnectionLike {
  private state: ConnectionState = INITIAL_CONNECTION_STATE;
  private readonly listeners = new Set<(s: ConnectionState) => void>();
  constructor(
    private readonly server: FakeServer,
    private readonly store: ProgressStore,
    readonly onAuthFailure: () => void,
  ) {}
  start(): void {
    this.server.connectionsOpened += 1;
    this.server.live.add(this);
    this.set({ status: "connected", isConnected: true, transport: "websocket" });
    this.requestResume();
  }
  stop(): void {
    this.server.live.delete(this);
    this.set({ ...INITIAL_CONNECTION_STATE, status: "closed" });
  }
  getState(): ConnectionState {
    return this.state;
  }
  subscribe(listener: (s: ConnectionState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  requestResume(): void {
    this.store.applyEvents(this.server.after(this.store.resumeRequest()));
  }
  resumeFor(jobs: Record<string, number>): Promise<ProgressEvent[]> {
    if (this.server.hangResume) return new Promise(() => {});
    return Promise.resolve(this.server.after(jobs));
  }
  deliver(event: ProgressEvent): void {
    if (this.store.applyEvent(event) === "gap") this.requestResume();
  }
  drop(): void {
    this.set({ status: "reconnecting", isConnected: false, reconnecting: true, transport: null });
  }
  private set(patch: Partial<ConnectionState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of this.listeners) l(this.state);
  }
}

interface Tab {
  hub: ProgressHub;
  applied: number[];
  onAuthFailure: ReturnType<typeof vi.fn>;
  connection: () => FakeConnection | undefined;
}

function world() {
  const locks = new FakeLocks();
  const bus = new FakeBus();
  const server = new FakeServer();
  const tabs: Tab[] = [];
  const openTab = (options: { fetchHistory?: (id: string, after: number, limit: number) => Promise<ProgressEvent[]> } = {}): Tab => {
    let connection: FakeConnection | undefined;
    const onAuthFailure = vi.fn();
    const hub = new ProgressHub({
      scope: "user-1",
      locks,
      openChannel: bus.open,
      onAuthFailure,
      fetchHistory: options.fetchHistory,
      createConnection: (store, authFailed) => {
        connection = new FakeConnection(server, store, authFailed);
        return connection;
      },
    });
    const applied: number[] = [];
    hub.store.onApplied((job) => applied.push(job.seq));
    hub.start();
    const tab = { hub, applied, onAuthFailure, connection: () => connection };
    tabs.push(tab);
    return tab;
  };
  return { locks, bus, server, tabs, openTab };
}

const stopAll: (() => void)[] = [];
afterEach(() => {
  for (const stop of stopAll.splice(0)) stop();
  vi.useRealTimers();
});

function track(w: ReturnType<typeof world>) {
  stopAll.push(() => w.tabs.forEach((t) => t.hub.stop()));
  return w;
}

describe("ProgressHub: one connection per browser", () => {
  it("opens ONE connection for several tabs and shows the same progress in all", async () => {
    const w = track(world());
    const a = w.openTab();
    const b = w.openTab();
    const c = w.openTab();
    await flush();
    expect(w.server.connectionsOpened).toBe(1);
    expect(w.server.live.size).toBe(1);
    expect(a.hub.getState().role).toBe("leader");
    expect(b.hub.getState().role).toBe("follower");
    expect(c.hub.getState().role).toBe("follower");

    for (let seq = 1; seq <= 4; seq++) w.server.publish(ev(JOB_A, seq));
    await flush();
    for (const tab of [a, b, c]) {
      expect(tab.applied).toEqual([1, 2, 3, 4]);
      expect(tab.hub.getState().jobs.get(JOB_A)?.seq).toBe(4);
    }
    // followers show the leader's connection state
    expect(b.hub.getState().isConnected).toBe(true);
    expect(b.hub.getState().transport).toBe("websocket");
    a.connection()?.drop();
    await flush();
    expect(b.hub.getState().reconnecting).toBe(true);
    expect(b.hub.getState().isConnected).toBe(false);
  });

  it("gives a tab opened later the current state at once", async () => {
    const w = track(world());
    w.openTab();
    await flush();
    w.server.publish(ev(JOB_A, 1));
    w.server.publish(ev(JOB_A, 2));
    await flush();
    const late = w.openTab();
    await flush();
    expect(late.hub.getState().jobs.get(JOB_A)?.seq).toBe(2);
    expect(late.hub.getState().isConnected).toBe(true);
    w.server.publish(ev(JOB_A, 3));
    await flush();
    expect(late.applied).toEqual([2, 3]);
    expect(w.server.connectionsOpened).toBe(1);
  });

  it("hands the connection over when the leader tab closes, without losing events", async () => {
    const w = track(world());
    const a = w.openTab();
    const b = w.openTab();
    const c = w.openTab();
    await flush();
    w.server.publish(ev(JOB_A, 1));
    w.server.publish(ev(JOB_A, 2));
    await flush();

    a.hub.stop(); // the leader tab closes: its lock is released, its socket gone
    // published while no tab holds a connection
    w.server.publish(ev(JOB_A, 3));
    w.server.publish(ev(JOB_A, 4));
    await flush();
    expect(b.hub.getState().role).toBe("leader");
    expect(c.hub.getState().role).toBe("follower");
    expect(w.server.connectionsOpened).toBe(2);
    expect(w.server.live.size).toBe(1);
    w.server.publish(ev(JOB_A, 5));
    w.server.publish(ev(JOB_A, 6, { status: "completed", progress: 100 }));
    await flush();
    for (const tab of [b, c]) {
      expect(tab.applied).toEqual([1, 2, 3, 4, 5, 6]);
      expect(tab.hub.getState().jobs.get(JOB_A)?.status).toBe("completed");
    }

    b.hub.stop(); // and once more: c takes over
    w.server.publish(ev("00000000-0000-4000-8000-0000000000cc", 1));
    await flush();
    expect(c.hub.getState().role).toBe("leader");
    expect(w.server.live.size).toBe(1);
  });

  it("brings a follower that missed the hand-over's last event up to date", async () => {
    const w = track(world());
    const a = w.openTab();
    const b = w.openTab();
    const c = w.openTab();
    await flush();
    w.server.publish(ev(JOB_A, 1));
    await flush();
    // c misses event 2 (the old leader died while relaying it); b got it
    w.bus.dropNext = (_msg, receiver) => receiver === (c.hub as unknown as { channel: unknown }).channel;
    w.server.publish(ev(JOB_A, 2));
    await flush();
    expect(c.applied).toEqual([1]);
    a.hub.stop();
    await flush();
    // the new leader's announcement makes c sync with it
    expect(b.hub.getState().role).toBe("leader");
    expect(c.applied).toEqual([1, 2]);
  });

  it("lets a follower fill a gap through the leader's resume", async () => {
    const w = track(world());
    w.openTab();
    const b = w.openTab();
    await flush();
    w.server.publish(ev(JOB_A, 1));
    await flush();
    w.bus.dropNext = (msg) => (msg as { t: string }).t === "event";
    w.server.publish(ev(JOB_A, 2)); // lost on the way to b
    w.server.publish(ev(JOB_A, 3)); // b sees a gap and asks the leader
    await flush();
    expect(b.applied).toEqual([1, 2, 3]);
    expect(w.bus.posted.some((m) => (m as { t: string }).t === "resume")).toBe(true);
  });

  it("falls back to the REST history when the leader does not answer a resume", async () => {
    vi.useFakeTimers();
    const fetchHistory = vi.fn(async (_id: string, after: number) => w.server.log.filter((e) => e.seq > after));
    const w = track(world());
    w.openTab();
    const b = w.openTab({ fetchHistory });
    await vi.advanceTimersByTimeAsync(0);
    w.server.publish(ev(JOB_A, 1));
    await vi.advanceTimersByTimeAsync(0);
    w.server.hangResume = true;
    w.bus.dropNext = (msg) => (msg as { t: string }).t === "event";
    w.server.publish(ev(JOB_A, 2));
    w.server.publish(ev(JOB_A, 3));
    await vi.advanceTimersByTimeAsync(0);
    expect(b.applied).toEqual([1]);
    await vi.advanceTimersByTimeAsync(5000);
    expect(fetchHistory).toHaveBeenCalledWith(JOB_A, 1, 1000);
    expect(b.applied).toEqual([1, 2, 3]);
  });

  it("sends every tab to the login page when the leader's token is refused", async () => {
    const w = track(world());
    const a = w.openTab();
    const b = w.openTab();
    await flush();
    a.connection()?.onAuthFailure();
    await flush();
    expect(a.onAuthFailure).toHaveBeenCalledTimes(1);
    expect(b.onAuthFailure).toHaveBeenCalledTimes(1);
  });

  it("notifies about a finished job in the leader tab only", async () => {
    const w = track(world());
    const a = w.openTab();
    const b = w.openTab();
    const finishedA = vi.fn();
    const finishedB = vi.fn();
    a.hub.onFinished(finishedA);
    b.hub.onFinished(finishedB);
    await flush();
    w.server.publish(ev(JOB_A, 1));
    w.server.publish(ev(JOB_A, 2, { status: "failed", error: "every video failed" }));
    await flush();
    expect(finishedA).toHaveBeenCalledTimes(1);
    expect(finishedA.mock.calls[0][0].status).toBe("failed");
    expect(finishedB).not.toHaveBeenCalled();
  });
});
