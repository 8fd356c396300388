import { describe, expect, it } from "vitest";

import { chooseTransports, transportOverride } from "../src/progress/transport";

const storage = (value: string | null) => ({ getItem: () => value });

describe("transport override", () => {
  it("defaults to polling upgraded to websocket", () => {
    expect(transportOverride("", storage(null))).toBeNull();
    expect(chooseTransports("", storage(null))).toEqual(["polling", "websocket"]);
  });
  it("forces long-polling from the URL", () => {
    expect(chooseTransports("?transport=polling", storage(null))).toEqual(["polling"]);
  });
  it("forces websocket from localStorage", () => {
    expect(chooseTransports("", storage("websocket"))).toEqual(["websocket"]);
  });
  it("prefers the URL over localStorage and ignores junk", () => {
    expect(chooseTransports("?transport=polling", storage("websocket"))).toEqual(["polling"]);
    expect(chooseTransports("?transport=carrier-pigeon", storage("junk"))).toEqual(["polling", "websocket"]);
  });
  it("survives a storage that throws", () => {
    const broken = {
      getItem: () => {
        throw new Error("denied");
      },
    };
    expect(chooseTransports("", broken)).toEqual(["polling", "websocket"]);
  });
});
