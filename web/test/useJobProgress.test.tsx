import { act, renderHook } from "@testing-library/react";
import type { ReactNode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { createBrowserHub } from "../src/progress/browserHub";
import { RESUME_MAX_JOBS, UNAVAILABLE_CODE } from "../src/progress/protocol";
import { ProgressProvider, useJobProgress } from "../src/progress/useJobProgress";
import type { ProgressEvent } from "../src/types";
import { JOB_A, JOB_B, ev, flush } from "./helpers";

// A fake socket.io-client: a socket with its Manager (`socket.io`), recording what the
// client emits and letting the test play the server.
const mocks = vi.hoisted(() => {
  type Handler = (...args: unknown[]) => void;
  class Emitter {
    handlers = new Map<string, Set<Handler>>();
    on(event: string, fn: Handler): this {
      const set = this.handlers.get(event) ?? new Set<Handler>();
      set.add(fn);
      this.handlers.set(event, set);
      return this;
    }
    off(event: string, fn: Handler): this {
      this.handlers.get(event)?.delete(fn);
      return this;
    }
    removeAllListeners(): this {
      this.handlers.clear();
      return this;
    }
    fire(event: string, ...args: unknown[]): void {
      for (const fn of [...(this.handlers.get(event) ?? [])]) fn(...args);
    }
  }
  class FakeEngine extends Emitter {
    transport = { name: "polling" };
  }
  class FakeManager extends Emitter {
    engine = new FakeEngine();
  }
  class FakeSocket extends Emitter {
    connected = false;
    /** false after a refusal by the server: socket.io-client then stops retrying */
    active = true;
    io = new FakeManager();
    connectCalls = 0;
    disconnectCalls = 0;
    sent: { event: string; args: unknown[] }[] = [];
    constructor(readonly opts: Record<string, unknown>) {
      super();
    }
    connect(): this {
      this.connectCalls += 1;
      this.active = true;
      return this;
    }
    serverRefuse(message: string, data?: unknown): void {
      this.active = false;
      this.fire("connect_error", Object.assign(new Error(message), { data }));
    }
    disconnect(): this {
      this.disconnectCalls += 1;
      this.connected = false;
      return this;
    }
    emit(event: string, ...args: unknown[]): this {
      this.sent.push({ event, args });
      return this;
    }
    // --- the server's side ---
    serverConnect(transport = "polling"): void {
      this.io.engine = new FakeEngine();
      this.io.engine.transport.name = transport;
      this.connected = true;
      this.fire("connect");
    }
    serverDrop(reason = "transport close"): void {
      this.connected = false;
      this.fire("disconnect", reason);
    }
    resumes(): { jobs: Record<string, number>; ack: (data: unknown) => void }[] {
      return this.sent
        .filter((s) => s.event === "resume")
        .map((s) => ({ jobs: (s.args[0] as { jobs: Record<string, number> }).jobs, ack: s.args[1] as (data: unknown) => void }));
    }
  }
  const sockets: FakeSocket[] = [];
  const io = vi.fn((...args: unknown[]) => {
    const opts = (args.length === 1 ? args[0] : args[1]) as Record<string, unknown>;
    const socket = new FakeSocket(opts);
    sockets.push(socket);
    return socket;
  });
  return { io, sockets };
});

vi.mock("socket.io-client", () => ({ io: mocks.io }));

let userCounter = 0;

function setup(options: { fetchHistory?: (id: string, after: number, limit: number) => Promise<ProgressEvent[]> } = {}) {
  userCounter += 1;
  const onAuthFailure = vi.fn();
  const token = { value: "token-1" as string | null };
  const wrapper = ({ children }: { children: ReactNode }) => (
    <ProgressProvider
      userId={`user-${userCounter}`}
      getToken={() => token.value}
      onAuthFailure={onAuthFailure}
      fetchHistory={options.fetchHistory}
      // one tab: no cross-tab machinery in these tests (covered in progressHub.test.ts)
      createHub={(opts) => {
        const hub = createBrowserHub(opts);
        return hub;
      }}
    >
      {children}
    </ProgressProvider>
  );
  const hook = renderHook(() => useJobProgress(), { wrapper });
  const socket = () => {
    const s = mocks.sockets.at(-1);
    if (!s) throw new Error("no socket opened");
    return s;
  };
  return { hook, socket, onAuthFailure, token };
}

beforeEach(() => {
  mocks.io.mockClear();
  mocks.sockets.length = 0;
  // jsdom has no Web Locks: force the single-tab path even where Node gives BroadcastChannel.
  vi.stubGlobal("BroadcastChannel", undefined);
  window.history.replaceState(null, "", "/lists/x");
  localStorage.clear();
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

describe("useJobProgress: connection lifecycle", () => {
  it("connects once to /api/ws/progress on its own origin with the token and the backoff", async () => {
    const { hook, socket } = setup();
    await act(flush);
    expect(mocks.io).toHaveBeenCalledTimes(1);
    const args = mocks.io.mock.calls[0];
    expect(args).toHaveLength(1); // no URL: the page's own origin
    const opts = socket().opts;
    expect(opts.path).toBe("/api/ws/progress");
    expect(opts.reconnectionDelay).toBe(3000);
    expect(opts.reconnectionDelayMax).toBe(30000);
    expect(opts.randomizationFactor).toBeGreaterThan(0);
    expect(opts.reconnection).toBe(true);
    expect(opts.transports).toEqual(["polling", "websocket"]);
    const auth = opts.auth as (cb: (data: object) => void) => void;
    const sent: object[] = [];
    auth((data) => sent.push(data));
    expect(sent).toEqual([{ token: "token-1" }]);
    expect(socket().connectCalls).toBe(1);

    expect(hook.result.current.isConnected).toBe(false);
    expect(hook.result.current.status).toBe("connecting");
    act(() => socket().serverConnect("websocket"));
    expect(hook.result.current.isConnected).toBe(true);
    expect(hook.result.current.reconnecting).toBe(false);
    expect(hook.result.current.transport).toBe("websocket");
    expect(hook.result.current.role).toBe("leader");
    // resume on every connect, even with nothing known yet
    expect(socket().resumes().map((r) => r.jobs)).toEqual([{}]);
  });

  it("reports a transport upgrade", async () => {
    const { hook, socket } = setup();
    await act(flush);
    act(() => socket().serverConnect("polling"));
    expect(hook.result.current.transport).toBe("polling");
    act(() => {
      socket().io.engine.transport.name = "websocket";
      socket().io.engine.fire("upgrade", socket().io.engine.transport);
    });
    expect(hook.result.current.transport).toBe("websocket");
  });

  it("uses the transport forced in the page URL", async () => {
    window.history.replaceState(null, "", "/lists/x?transport=polling");
    const { socket } = setup();
    await act(flush);
    expect(socket().opts.transports).toEqual(["polling"]);
  });

  it("uses the transport forced in localStorage", async () => {
    localStorage.setItem("reeltrack.transport", "websocket");
    const { socket } = setup();
    await act(flush);
    expect(socket().opts.transports).toEqual(["websocket"]);
  });

  it("sends the user to the login page when the token is refused", async () => {
    const { hook, socket, onAuthFailure } = setup();
    await act(flush);
    act(() => socket().serverRefuse("invalid_token", { code: 1008, reason: "invalid_token" }));
    expect(onAuthFailure).toHaveBeenCalledTimes(1);
    expect(hook.result.current.isConnected).toBe(false);
    expect(hook.result.current.reconnecting).toBe(false);
    expect(hook.result.current.refusal).toBe("invalid_token");
    expect(hook.result.current.status).toBe("refused");
    expect(socket().disconnectCalls).toBe(1);
  });

  it("recognises a refusal whose reason is only in the message", async () => {
    const { socket, onAuthFailure } = setup();
    await act(flush);
    act(() => socket().serverRefuse("{'code': 1008, 'reason': 'invalid_token'}"));
    expect(onAuthFailure).toHaveBeenCalledTimes(1);
  });

  it("retries with backoff when refused for too many connections", async () => {
    const { hook, socket, onAuthFailure } = setup();
    await act(flush);
    vi.useFakeTimers();
    act(() => socket().serverRefuse("too_many_connections", { code: 1008, reason: "too_many_connections" }));
    expect(onAuthFailure).not.toHaveBeenCalled();
    expect(hook.result.current.refusal).toBe("too_many_connections");
    expect(hook.result.current.reconnecting).toBe(true);
    expect(socket().connectCalls).toBe(1);
    // 3 s +/- 50 % jitter: not before 1.5 s, surely by 4.5 s
    act(() => vi.advanceTimersByTime(1499));
    expect(socket().connectCalls).toBe(1);
    act(() => vi.advanceTimersByTime(3001));
    expect(socket().connectCalls).toBe(2);
    act(() => socket().serverConnect());
    expect(hook.result.current.refusal).toBeNull();
    expect(hook.result.current.isConnected).toBe(true);
  });

  it("retries itself after the server could not check the connection (unavailable)", async () => {
    const { hook, socket, onAuthFailure } = setup();
    await act(flush);
    vi.useFakeTimers();
    act(() => socket().serverRefuse("unavailable", { code: UNAVAILABLE_CODE, reason: "unavailable" }));
    expect(onAuthFailure).not.toHaveBeenCalled();
    expect(hook.result.current.refusal).toBe("unavailable");
    expect(hook.result.current.reconnecting).toBe(true);
    act(() => vi.advanceTimersByTime(4500));
    expect(socket().connectCalls).toBe(2);
    // the second refusal waits about twice as long (3 s doubling, +/- 50 %)
    act(() => socket().serverRefuse("unavailable", { code: UNAVAILABLE_CODE, reason: "unavailable" }));
    act(() => vi.advanceTimersByTime(2999));
    expect(socket().connectCalls).toBe(2);
    act(() => vi.advanceTimersByTime(6001));
    expect(socket().connectCalls).toBe(3);
  });

  it("leaves transport errors to the Manager's own backoff", async () => {
    const { hook, socket } = setup();
    await act(flush);
    vi.useFakeTimers();
    act(() => socket().fire("connect_error", new Error("xhr poll error"))); // socket.active stays true
    expect(hook.result.current.reconnecting).toBe(true);
    act(() => vi.advanceTimersByTime(60000));
    expect(socket().connectCalls).toBe(1);
  });

  it("shows the reconnect state from the Manager and resumes from the last seqs on reconnect", async () => {
    const { hook, socket } = setup();
    await act(flush);
    act(() => socket().serverConnect());
    act(() => socket().fire("progress", ev(JOB_A, 1)));
    act(() => socket().fire("progress", ev(JOB_A, 2)));
    const lastUpdate = hook.result.current.lastUpdateAt;
    expect(lastUpdate).not.toBeNull();

    act(() => socket().serverDrop("transport close"));
    expect(hook.result.current.isConnected).toBe(false);
    expect(hook.result.current.reconnecting).toBe(true);
    expect(hook.result.current.transport).toBeNull();
    act(() => socket().io.fire("reconnect_attempt", 1));
    expect(hook.result.current.reconnecting).toBe(true);
    expect(hook.result.current.status).toBe("reconnecting");
    // a failed attempt (server still down) keeps the state
    act(() => socket().fire("connect_error", new Error("xhr poll error")));
    expect(hook.result.current.reconnecting).toBe(true);
    expect(hook.result.current.jobProgress.get(JOB_A)?.seq).toBe(2); // state kept while away
    expect(hook.result.current.lastUpdateAt).toBe(lastUpdate);

    act(() => socket().io.fire("reconnect", 2));
    act(() => socket().serverConnect());
    await act(flush);
    expect(hook.result.current.isConnected).toBe(true);
    expect(hook.result.current.reconnecting).toBe(false);
    const resumes = socket().resumes();
    expect(resumes.at(-1)?.jobs).toEqual({ [JOB_A]: 2 });
    // what happened while away arrives in the ack
    await act(async () => {
      resumes.at(-1)?.ack({ events: [ev(JOB_A, 3), ev(JOB_A, 4)], truncated: false });
      await flush();
    });
    expect(hook.result.current.jobProgress.get(JOB_A)?.seq).toBe(4);
  });

  it("reconnects itself after a server-side disconnect", async () => {
    const { hook, socket } = setup();
    await act(flush);
    vi.useFakeTimers();
    act(() => socket().serverConnect());
    act(() => socket().serverDrop("io server disconnect"));
    expect(hook.result.current.reconnecting).toBe(true);
    act(() => vi.advanceTimersByTime(3000));
    expect(socket().connectCalls).toBe(2);
  });

  it("closes the socket on unmount", async () => {
    const { hook, socket } = setup();
    await act(flush);
    act(() => socket().serverConnect());
    hook.unmount();
    expect(socket().disconnectCalls).toBe(1);
  });
});

describe("useJobProgress: events", () => {
  it("applies the snapshot and live events, dropping duplicates", async () => {
    const { hook, socket } = setup();
    await act(flush);
    act(() => socket().serverConnect());
    act(() => socket().fire("snapshot", { jobs: [ev(JOB_A, 3), ev(JOB_B, 1)] }));
    expect([...hook.result.current.jobProgress.keys()].sort()).toEqual([JOB_A, JOB_B]);
    const before = hook.result.current.jobProgress;
    act(() => socket().fire("progress", ev(JOB_A, 4, { message: "Processing video 3/10" })));
    expect(hook.result.current.jobProgress).not.toBe(before);
    expect(hook.result.current.jobProgress.get(JOB_A)?.message).toBe("Processing video 3/10");
    const current = hook.result.current.jobProgress;
    act(() => socket().fire("progress", ev(JOB_A, 4, { message: "again" })));
    act(() => socket().fire("progress", ev(JOB_A, 3, { message: "older" })));
    expect(hook.result.current.jobProgress).toBe(current); // nothing changed, same Map
    expect(hook.result.current.jobProgress.get(JOB_A)?.message).toBe("Processing video 3/10");
  });

  it("fills a seq gap with resume and applies the events in order", async () => {
    const { hook, socket } = setup();
    await act(flush);
    act(() => socket().serverConnect());
    socket().resumes()[0].ack({ events: [], truncated: false });
    await act(flush);
    act(() => socket().fire("progress", ev(JOB_A, 1)));
    act(() => socket().fire("progress", ev(JOB_A, 2)));
    act(() => socket().fire("progress", ev(JOB_A, 5)));
    expect(hook.result.current.jobProgress.get(JOB_A)?.seq).toBe(2);
    const resume = socket().resumes().at(-1);
    expect(resume?.jobs).toEqual({ [JOB_A]: 2 });
    await act(async () => {
      resume?.ack({ events: [ev(JOB_A, 3), ev(JOB_A, 4), ev(JOB_A, 5)], truncated: false });
      await flush();
    });
    expect(hook.result.current.jobProgress.get(JOB_A)?.seq).toBe(5);
  });

  it("continues a truncated resume with the advanced seqs", async () => {
    const { hook, socket } = setup();
    await act(flush);
    act(() => socket().serverConnect());
    socket().resumes()[0].ack({ events: [], truncated: false });
    await act(flush);
    act(() => socket().fire("progress", ev(JOB_A, 1)));
    act(() => socket().fire("resync", { reason: "pubsub reconnected" }));
    const first = socket().resumes().at(-1);
    expect(first?.jobs).toEqual({ [JOB_A]: 1 });
    await act(async () => {
      first?.ack({ events: [ev(JOB_A, 2), ev(JOB_A, 3)], truncated: true });
      await flush();
    });
    const second = socket().resumes().at(-1);
    expect(second).not.toBe(first);
    expect(second?.jobs).toEqual({ [JOB_A]: 3 });
    await act(async () => {
      second?.ack({ events: [ev(JOB_A, 4)], truncated: false });
      await flush();
    });
    expect(hook.result.current.jobProgress.get(JOB_A)?.seq).toBe(4);
    expect(socket().resumes()).toHaveLength(3); // connect + 2 rounds, no more
  });

  it("falls back to the REST history when resume is not answered", async () => {
    const fetchHistory = vi.fn(async (_id: string, after: number) =>
      [3, 4, 5].filter((s) => s > after).map((s) => ev(JOB_A, s)),
    );
    const { hook, socket } = setup({ fetchHistory });
    await act(flush);
    vi.useFakeTimers();
    act(() => socket().serverConnect());
    act(() => socket().resumes()[0].ack({ events: [], truncated: false }));
    await act(() => vi.advanceTimersByTimeAsync(0));
    act(() => socket().fire("progress", ev(JOB_A, 1)));
    act(() => socket().fire("progress", ev(JOB_A, 2)));
    act(() => socket().fire("progress", ev(JOB_A, 5))); // gap; the resume is never answered
    await act(() => vi.advanceTimersByTimeAsync(10000));
    expect(fetchHistory).toHaveBeenCalledWith(JOB_A, 2, 1000);
    expect(hook.result.current.jobProgress.get(JOB_A)?.seq).toBe(5);
  });

  it("falls back to the REST history when the server answers resume with an error", async () => {
    const fetchHistory = vi.fn(async (_id: string, after: number) =>
      [3, 4].filter((s) => s > after).map((s) => ev(JOB_A, s)),
    );
    const { hook, socket } = setup({ fetchHistory });
    await act(flush);
    act(() => socket().serverConnect());
    socket().resumes()[0].ack({ events: [], truncated: false });
    await act(flush);
    act(() => socket().fire("progress", ev(JOB_A, 1)));
    act(() => socket().fire("progress", ev(JOB_A, 2)));
    act(() => socket().fire("progress", ev(JOB_A, 4)));
    await act(async () => {
      socket().resumes().at(-1)?.ack({ error: "at most 200 jobs per resume" });
      await flush();
    });
    expect(fetchHistory).toHaveBeenCalledWith(JOB_A, 2, 1000);
    expect(hook.result.current.jobProgress.get(JOB_A)?.seq).toBe(4);
  });

  it("splits a resume for many jobs into requests the server accepts", async () => {
    const { socket } = setup();
    await act(flush);
    act(() => socket().serverConnect());
    socket().resumes()[0].ack({ events: [], truncated: false });
    await act(flush);
    const ids = Array.from({ length: 2 * RESUME_MAX_JOBS + 50 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`);
    act(() => socket().fire("snapshot", { jobs: ids.map((id) => ev(id, 2)) }));
    act(() => socket().fire("resync", { reason: "test" }));
    await act(flush);
    const sizes: number[] = [];
    for (let round = 0; round < 3; round++) {
      const pending = socket().resumes().at(-1);
      sizes.push(Object.keys(pending?.jobs ?? {}).length);
      await act(async () => {
        pending?.ack({ events: [], truncated: false });
        await flush();
      });
    }
    expect(sizes).toEqual([RESUME_MAX_JOBS, RESUME_MAX_JOBS, 50]);
  });

  it("drops a finished job from the dashboard 5 minutes after its final event", async () => {
    const { hook, socket } = setup();
    await act(flush);
    vi.useFakeTimers();
    act(() => socket().serverConnect());
    act(() => socket().fire("progress", ev(JOB_A, 1)));
    act(() => socket().fire("progress", ev(JOB_A, 2, { status: "completed", progress: 100 })));
    expect(hook.result.current.jobProgress.get(JOB_A)?.status).toBe("completed");
    act(() => vi.advanceTimersByTime(5 * 60 * 1000 - 1));
    expect(hook.result.current.jobProgress.has(JOB_A)).toBe(true);
    act(() => vi.advanceTimersByTime(1));
    expect(hook.result.current.jobProgress.has(JOB_A)).toBe(false);
  });
});
