/** Builders and fakes shared by the unit tests. */
import type { LockManagerLike } from "../src/progress/leaderElection";
import type { ChannelLike } from "../src/progress/tabProtocol";
import type { JobStatus, ProgressEvent } from "../src/types";

export const JOB_A = "00000000-0000-4000-8000-00000000000a";
export const JOB_B = "00000000-0000-4000-8000-00000000000b";

/** A valid progress event; `seq` n of a 10-video job unless overridden. */
export function ev(jobId: string, seq: number, overrides: Partial<ProgressEvent> = {}): ProgressEvent {
  const status: JobStatus = overrides.status ?? (seq === 1 ? "pending" : "processing");
  const done = Math.max(0, seq - 1);
  return {
    job_id: jobId,
    seq,
    status,
    progress: status === "completed" ? 100 : Math.min(99, done * 10),
    current_video: done,
    total_videos: 10,
    processed_videos: done,
    failed_videos: 0,
    message: `event ${seq}`,
    video_id: null,
    video_title: null,
    error: null,
    created_at: new Date().toISOString(),
    ...overrides,
  };
}

/** Flush queued microtasks and zero-delay timers (real timers). */
export async function flush(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setTimeout(resolve, 0));
}

function abortError(): Error {
  const err = new Error("The request was aborted.");
  err.name = "AbortError";
  return err;
}

interface LockRequest {
  callback: (lock: unknown) => unknown;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
  granted: boolean;
}

/**
 * An in-memory Web Locks manager (exclusive mode): one holder per name, FIFO waiters,
 * the lock held until the callback's promise settles, `signal` aborts a waiting request.
 */
export class FakeLocks implements LockManagerLike {
  private readonly holders = new Map<string, LockRequest>();
  private readonly queues = new Map<string, LockRequest[]>();

  request(
    name: string,
    options: { mode?: "exclusive" | "shared"; signal?: AbortSignal },
    callback: (lock: unknown) => unknown,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const signal = options.signal;
      if (signal?.aborted) {
        reject(abortError());
        return;
      }
      const req: LockRequest = { callback, resolve, reject, granted: false };
      signal?.addEventListener("abort", () => {
        if (req.granted) return; // aborting a granted lock does nothing (as in browsers)
        const queue = this.queues.get(name) ?? [];
        const index = queue.indexOf(req);
        if (index >= 0) queue.splice(index, 1);
        reject(abortError());
      });
      const queue = this.queues.get(name) ?? [];
      queue.push(req);
      this.queues.set(name, queue);
      this.pump(name);
    });
  }

  /** Names held and the number of waiters, for assertions. */
  waiting(name: string): number {
    return this.queues.get(name)?.length ?? 0;
  }

  isHeld(name: string): boolean {
    return this.holders.has(name);
  }

  private pump(name: string): void {
    if (this.holders.has(name)) return;
    const next = this.queues.get(name)?.shift();
    if (!next) return;
    next.granted = true;
    this.holders.set(name, next);
    Promise.resolve()
      .then(() => next.callback({ name, mode: "exclusive" }))
      .then(
        (value) => {
          this.holders.delete(name);
          next.resolve(value);
          this.pump(name);
        },
        (error: unknown) => {
          this.holders.delete(name);
          next.reject(error);
          this.pump(name);
        },
      );
  }
}

/** An in-memory BroadcastChannel: delivers (a structured clone) to the OTHER open channels of a name, asynchronously. */
export class FakeBus {
  private readonly channels = new Map<string, Set<FakeChannel>>();
  /** Drop the next message matching the predicate, for the given receiver (simulates loss). */
  dropNext: ((message: unknown, receiver: FakeChannel) => boolean) | null = null;
  posted: unknown[] = [];

  open = (name: string): ChannelLike => {
    const channel = new FakeChannel(this, name);
    const set = this.channels.get(name) ?? new Set();
    set.add(channel);
    this.channels.set(name, set);
    return channel;
  };

  deliver(from: FakeChannel, message: unknown): void {
    this.posted.push(message);
    for (const to of this.channels.get(from.name) ?? []) {
      if (to === from) continue;
      if (this.dropNext && this.dropNext(message, to)) {
        this.dropNext = null;
        continue;
      }
      const data = structuredClone(message);
      queueMicrotask(() => {
        if (!to.closed) to.onmessage?.({ data } as MessageEvent);
      });
    }
  }

  remove(channel: FakeChannel): void {
    this.channels.get(channel.name)?.delete(channel);
  }
}

export class FakeChannel implements ChannelLike {
  onmessage: ((event: MessageEvent) => void) | null = null;
  closed = false;
  constructor(
    private readonly bus: FakeBus,
    readonly name: string,
  ) {}

  postMessage(message: unknown): void {
    if (this.closed) throw new Error("channel closed");
    this.bus.deliver(this, message);
  }

  close(): void {
    this.closed = true;
    this.bus.remove(this);
  }
}
