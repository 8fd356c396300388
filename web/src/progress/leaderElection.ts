/**
 * Leader election between the tabs of one browser: the tab holding a named Web Lock
 * (`navigator.locks.request` with a never-settling promise) is the leader. When it closes,
 * the browser releases the lock and the next waiting tab gets it. The lock manager is
 * injected so this runs in unit tests without a browser.
 */

/** The part of `navigator.locks` we use. */
export interface LockManagerLike {
  request(
    name: string,
    options: { mode?: "exclusive" | "shared"; signal?: AbortSignal },
    callback: (lock: unknown) => unknown,
  ): Promise<unknown>;
}

/**
 * Holds the named Web Lock while this tab is leader. Without a lock manager (old
 * browsers) every tab is its own leader.
 */
export class LeaderElection {
  private readonly locks: LockManagerLike | null;
  private readonly name: string;
  private readonly onAcquire: () => void;
  private abort: AbortController | null = null;
  private release: (() => void) | null = null;
  private leader = false;
  private running = false;

  constructor(options: { locks: LockManagerLike | null; name: string; onAcquire: () => void }) {
    this.locks = options.locks;
    this.name = options.name;
    this.onAcquire = options.onAcquire;
  }

  get isLeader(): boolean {
    return this.leader;
  }

  /** Queue for the lock; `onAcquire` runs when (if ever) this tab gets it. */
  start(): void {
    if (this.running) return;
    this.running = true;
    if (!this.locks) {
      this.leader = true;
      this.onAcquire();
      return;
    }
    const abort = new AbortController();
    this.abort = abort;
    this.locks
      .request(this.name, { mode: "exclusive", signal: abort.signal }, () => {
        if (!this.running || abort.signal.aborted) return undefined;
        this.leader = true;
        // Held until stop(): the lock is ours for as long as this promise is pending
        // (the browser also releases it when the tab goes away).
        const held = new Promise<void>((resolve) => {
          this.release = resolve;
        });
        this.onAcquire();
        return held;
      })
      .catch(() => {
        // AbortError: stop() while still waiting for the lock.
      });
  }

  /** Give the lock up (or stop waiting for it). */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.leader = false;
    this.abort?.abort();
    this.abort = null;
    this.release?.();
    this.release = null;
  }
}
