import { describe, expect, it, vi } from "vitest";

import { LeaderElection } from "../src/progress/leaderElection";
import { FakeLocks, flush } from "./helpers";

describe("LeaderElection", () => {
  it("makes every tab leader when there is no lock manager", () => {
    const onAcquire = vi.fn();
    const election = new LeaderElection({ locks: null, name: "x", onAcquire });
    election.start();
    expect(onAcquire).toHaveBeenCalledTimes(1);
    expect(election.isLeader).toBe(true);
  });

  it("grants the lock to one tab at a time and hands it over on stop", async () => {
    const locks = new FakeLocks();
    const a = vi.fn();
    const b = vi.fn();
    const ea = new LeaderElection({ locks, name: "lead", onAcquire: a });
    const eb = new LeaderElection({ locks, name: "lead", onAcquire: b });
    ea.start();
    eb.start();
    await flush();
    expect([a.mock.calls.length, b.mock.calls.length]).toEqual([1, 0]);
    expect(ea.isLeader && !eb.isLeader).toBe(true);
    ea.stop();
    await flush();
    expect(b).toHaveBeenCalledTimes(1);
    expect(eb.isLeader).toBe(true);
    eb.stop();
    await flush();
    expect(locks.isHeld("lead")).toBe(false);
  });

  it("stops waiting for the lock when stopped before getting it", async () => {
    const locks = new FakeLocks();
    const a = vi.fn();
    const b = vi.fn();
    const ea = new LeaderElection({ locks, name: "lead", onAcquire: a });
    const eb = new LeaderElection({ locks, name: "lead", onAcquire: b });
    ea.start();
    eb.start();
    await flush();
    expect(locks.waiting("lead")).toBe(1);
    eb.stop();
    await flush();
    expect(locks.waiting("lead")).toBe(0);
    ea.stop();
    await flush();
    expect(b).not.toHaveBeenCalled();
    expect(locks.isHeld("lead")).toBe(false);
  });
});
