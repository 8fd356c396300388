/**
 * A background refresh (the socket saw progress, it reconnected) must not throw away a
 * "Load more" the user clicked: with TanStack Query's default an invalidation cancels the
 * next-page fetch in flight and the list stays at one page.
 */
import { InfiniteQueryObserver, QueryClient } from "@tanstack/react-query";
import { describe, expect, it } from "vitest";

import { BACKGROUND_REFRESH } from "../src/queries";

type Page = { items: number[]; next_cursor: string | null };

function pagedSource(pages: number) {
  let release: (() => void) | null = null;
  const fetchPage = async (cursor: string | null): Promise<Page> => {
    const n = cursor === null ? 0 : Number(cursor);
    if (n > 0) await new Promise<void>((r) => (release = r)); // a slow next page
    return { items: [n], next_cursor: n + 1 < pages ? String(n + 1) : null };
  };
  return { fetchPage, releaseNext: () => release?.() };
}

async function loadMoreWhileRefreshing(options?: typeof BACKGROUND_REFRESH): Promise<number> {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const source = pagedSource(3);
  const observer = new InfiniteQueryObserver(client, {
    queryKey: ["videos", "list"],
    queryFn: ({ pageParam }) => source.fetchPage(pageParam as string | null),
    initialPageParam: null as string | null,
    getNextPageParam: (last: Page) => last.next_cursor,
  });
  const unsubscribe = observer.subscribe(() => undefined);
  await observer.refetch();
  const more = observer.fetchNextPage();
  await new Promise((r) => setTimeout(r, 0));
  const refresh = client.invalidateQueries({ queryKey: ["videos"] }, options);
  source.releaseNext();
  await Promise.allSettled([more, refresh]);
  await new Promise((r) => setTimeout(r, 0));
  source.releaseNext(); // a refetch of the loaded pages, if one was started
  await client.getQueryCache().find({ queryKey: ["videos", "list"] })?.promise?.catch(() => undefined);
  const pages = observer.getCurrentResult().data?.pages.length ?? 0;
  unsubscribe();
  client.clear();
  return pages;
}

describe("background refresh", () => {
  it("keeps the page the user asked for", async () => {
    expect(await loadMoreWhileRefreshing(BACKGROUND_REFRESH)).toBe(2);
  });

  it("is needed: the default invalidation cancels the page load", async () => {
    expect(await loadMoreWhileRefreshing()).toBe(1);
  });
});
