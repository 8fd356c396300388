/**
 * The REST types derived from the generated OpenAPI types are real shapes: a path,
 * method or status that no longer matches the document makes them `never`, which `tsc`
 * (run over test/ too) reports here.
 */
import { describe, expectTypeOf, it } from "vitest";

import type { AuthOptions, CancelResult, HistoryPage, ImportAccepted, JobsFilter, LoginResult } from "../src/api";
import type { Job, ProgressEvent, User, Video, VideoList } from "../src/types";

describe("REST types from the OpenAPI document", () => {
  it("resolve every response the client reads", () => {
    expectTypeOf<User>().not.toBeNever();
    expectTypeOf<User>().toHaveProperty("username").toEqualTypeOf<string>();
    expectTypeOf<LoginResult>().toHaveProperty("access_token").toEqualTypeOf<string>();
    expectTypeOf<AuthOptions>().toHaveProperty("allow_registration").toEqualTypeOf<boolean>();
    expectTypeOf<ImportAccepted>().toHaveProperty("job_id").toEqualTypeOf<string>();
    expectTypeOf<ImportAccepted>().toHaveProperty("total_videos").toEqualTypeOf<number>();
    expectTypeOf<CancelResult>().toHaveProperty("result").toExtend<string>();
    expectTypeOf<VideoList>().toHaveProperty("video_count").toEqualTypeOf<number>();
    expectTypeOf<Video>().toHaveProperty("thumbnail_url").toEqualTypeOf<string | null>();
    expectTypeOf<"active">().toExtend<JobsFilter>();
  });

  it("narrow what the document leaves loose", () => {
    expectTypeOf<Job["status"]>().toEqualTypeOf<ProgressEvent["status"]>();
    expectTypeOf<Job["latest_event"]>().toEqualTypeOf<ProgressEvent | null>();
    expectTypeOf<HistoryPage["events"]>().toEqualTypeOf<ProgressEvent[]>();
    expectTypeOf<HistoryPage>().toHaveProperty("last_seq").toEqualTypeOf<number>();
  });
});
