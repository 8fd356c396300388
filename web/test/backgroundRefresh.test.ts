/**
 * A background refresh (the socket saw progress, it reconnected) must neither throw away
 * a "Load more" the user clicked nor be lost behind it. With TanStack Query's default an
 * invalidation cancels the next-page fetch in flight and the list stays at one page.
 */
import { InfiniteQueryObserver, QueryClient } from "@tanstack/react-query";
import { describe, expect, it } from "vitest";

import { refreshInBackground } from "../src/queries";

type Page = { items: string[]; next_cursor: string | null };

/** Three pages; the next page answers only when released; `version` marks each read. */
function pagedSource() {
  const state = { version: 1, release: null as (() => void) | null };
  const fetchPage = async (cursor: string | null): Promise<Page> => {
    const n = cursor === null ? 0 : Number(cursor);
    const version = state.version;
    if (n > 0) await new Promise<void>((r) => (state.release = r));
    return { items: [`page${n}-v${version}`], next_cursor: n + 1 < 3 ? String(n + 1) : null };
  };
  return { state, fetchPage };
}

async function loadMoreWhileRefreshing(refresh: (c: QueryClient) => Promise<void>) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const source = pagedSource();
  const observer = new InfiniteQueryObserver(client, {
    queryKey: ["videos", "list"],
    queryFn: ({ pageParam }) => source.fetchPage(pageParam as string | null),
    initialPageParam: null as string | null,
    getNextPageParam: (last: Page) => last.next_cursor,
  });
  const unsubscribe = observer.subscribe(() => undefined);
  await observer.refetch();
  const more = observer.fetchNextPage(); // the user clicks "Load more"
  await new Promise((r) => setTimeout(r, 0));
  source.state.version = 2; // the server's data changes meanwhile
  const refreshed = refresh(client); // ... and the socket asks for a refresh
  for (let i = 0; i < 20; i++) {
    source.state.release?.();
    await new Promise((r) => setTimeout(r, 5));
  }
  await Promise.allSettled([more, refreshed]);
  const pages = observer.getCurrentResult().data?.pages ?? [];
  unsubscribe();
  client.clear();
  return pages.map((p) => p.items[0]);
}

describe("background refresh", () => {
  it("keeps the page the user asked for and then shows the new data", async () => {
    const items = await loadMoreWhileRefreshing((c) => refreshInBackground(c, { queryKey: ["videos"] }));
    expect(items).toEqual(["page0-v2", "page1-v2"]);
  });

  it("is needed: a plain invalidation cancels the page load", async () => {
    const items = await loadMoreWhileRefreshing((c) => c.invalidateQueries({ queryKey: ["videos"] }));
    expect(items).toHaveLength(1);
  });

  it("is needed: skipping fetches in flight keeps data read before the change", async () => {
    const items = await loadMoreWhileRefreshing((c) =>
      c.invalidateQueries({ queryKey: ["videos"] }, { cancelRefetch: false }),
    );
    expect(items).toEqual(["page0-v1", "page1-v1"]);
  });
});
