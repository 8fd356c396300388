/**
 * Which Engine.IO transports the socket may use.
 *
 * Default: socket.io-client's own (long-polling first, upgraded to WebSocket). For tests
 * and restrictive proxies, `?transport=polling` (or `websocket`) in the page URL, or the
 * same value in localStorage under `reeltrack.transport`, forces one transport.
 */
export type TransportName = "polling" | "websocket";

export const TRANSPORT_STORAGE_KEY = "reeltrack.transport";
export const DEFAULT_TRANSPORTS: readonly TransportName[] = ["polling", "websocket"];

function parse(value: string | null | undefined): TransportName[] | null {
  if (value === "polling") return ["polling"];
  if (value === "websocket") return ["websocket"];
  return null;
}

/** The forced transport list, or null when nothing is forced. Never throws. */
export function transportOverride(
  search: string = typeof location === "undefined" ? "" : location.search,
  storage: Pick<Storage, "getItem"> | null = safeLocalStorage(),
): TransportName[] | null {
  const fromUrl = parse(new URLSearchParams(search).get("transport"));
  if (fromUrl) return fromUrl;
  try {
    return parse(storage?.getItem(TRANSPORT_STORAGE_KEY));
  } catch {
    return null;
  }
}

/** The transports to hand to socket.io-client. */
export function chooseTransports(
  search?: string,
  storage?: Pick<Storage, "getItem"> | null,
): TransportName[] {
  return transportOverride(search, storage) ?? [...DEFAULT_TRANSPORTS];
}

function safeLocalStorage(): Storage | null {
  try {
    return typeof localStorage === "undefined" ? null : localStorage;
  } catch {
    return null;
  }
}
