from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        CREATE TABLE IF NOT EXISTS "users" (
    "id" UUID NOT NULL PRIMARY KEY,
    "username" VARCHAR(64) NOT NULL UNIQUE,
    "password_hash" VARCHAR(255) NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS "video_lists" (
    "id" UUID NOT NULL PRIMARY KEY,
    "name" VARCHAR(200) NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "owner_id" UUID NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS "idx_video_lists_owner_i_f41619" ON "video_lists" ("owner_id", "created_at");
CREATE TABLE IF NOT EXISTS "processing_jobs" (
    "id" UUID NOT NULL PRIMARY KEY,
    "status" VARCHAR(16) NOT NULL,
    "total_videos" INT NOT NULL,
    "processed_videos" INT NOT NULL,
    "failed_videos" INT NOT NULL,
    "last_seq" INT NOT NULL,
    "cancel_requested" BOOL NOT NULL,
    "rq_job_id" VARCHAR(64),
    "created_at" TIMESTAMPTZ NOT NULL,
    "started_at" TIMESTAMPTZ,
    "finished_at" TIMESTAMPTZ,
    "heartbeat_at" TIMESTAMPTZ,
    "list_id" UUID NOT NULL REFERENCES "video_lists" ("id") ON DELETE CASCADE,
    "owner_id" UUID NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS "idx_processing__status_2678c8" ON "processing_jobs" ("status");
CREATE INDEX IF NOT EXISTS "idx_processing__owner_i_d70350" ON "processing_jobs" ("owner_id", "created_at");
COMMENT ON COLUMN "processing_jobs"."status" IS 'PENDING: pending\nPROCESSING: processing\nCOMPLETED: completed\nFAILED: failed\nCANCELLED: cancelled';
COMMENT ON COLUMN "processing_jobs"."heartbeat_at" IS 'refreshed by the worker while it holds the job; the stale-job check reads it';
CREATE TABLE IF NOT EXISTS "job_progress_events" (
    "id" BIGSERIAL NOT NULL PRIMARY KEY,
    "seq" INT NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "progress_data" JSONB NOT NULL,
    "job_id" UUID NOT NULL REFERENCES "processing_jobs" ("id") ON DELETE CASCADE,
    CONSTRAINT "uid_job_progres_job_id_06c509" UNIQUE ("job_id", "seq")
);
CREATE INDEX IF NOT EXISTS "idx_job_progres_created_9c2335" ON "job_progress_events" ("created_at");
-- hand-written: aerich cannot express DESC (DESIGN section 2)
CREATE INDEX IF NOT EXISTS "idx_job_progress_job_created" ON "job_progress_events" ("job_id", "created_at" DESC);
CREATE TABLE IF NOT EXISTS "videos" (
    "id" UUID NOT NULL PRIMARY KEY,
    "source" VARCHAR(2048) NOT NULL,
    "title" VARCHAR(500) NOT NULL,
    "position" INT NOT NULL,
    "status" VARCHAR(16) NOT NULL,
    "duration_s" DOUBLE PRECISION,
    "width" INT,
    "height" INT,
    "fps" DOUBLE PRECISION,
    "video_codec" VARCHAR(64),
    "audio_codec" VARCHAR(64),
    "bitrate" BIGINT,
    "size_bytes" BIGINT,
    "thumbnail_path" VARCHAR(1024),
    "error" TEXT,
    "created_at" TIMESTAMPTZ NOT NULL,
    "processed_at" TIMESTAMPTZ,
    "job_id" UUID REFERENCES "processing_jobs" ("id") ON DELETE SET NULL,
    "list_id" UUID NOT NULL REFERENCES "video_lists" ("id") ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS "idx_videos_job_id_5268cf" ON "videos" ("job_id", "position");
CREATE INDEX IF NOT EXISTS "idx_videos_list_id_6ce14d" ON "videos" ("list_id", "created_at");
COMMENT ON COLUMN "videos"."source" IS '\"http(s)://...\" for URLs, \"import:<relative path>\" or \"upload:<relative path>\"';
COMMENT ON COLUMN "videos"."position" IS 'position within its import job, so a job processes videos in a stable order';
COMMENT ON COLUMN "videos"."status" IS 'PENDING: pending\nPROCESSING: processing\nREADY: ready\nFAILED: failed';
COMMENT ON COLUMN "videos"."job_id" IS 'the import job that created this video; the worker processes a job''s videos';
CREATE TABLE IF NOT EXISTS "aerich" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSONB NOT NULL
);"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        """


MODELS_STATE = (
    "eJztXG1z2jgQ/isaf7l2pk0T8npppzOEOC0tgUxCer2WjkfYAutiLGLLoVwv//0k2fjdDq"
    "aQGOIvmSDt2tKzenm0u9YvaUQ0ZNhbn0j/wiJDC9m2fIdMKh2DX5IJR4j9kynzCkhwPA4k"
    "eAGFfUMo/UP6ytgTVxCXF/Wwb1MLqvwFA2jYiBVpyFYtPKaYmKzUdAyDFxKVCWJzGBQ5Jr"
    "51kELJEFEdWazi+3f+Gv5YG91KP36wf7CpoZ/I5pX85/hGGWBkaJH+YI2riHKFTsei7AQP"
    "myY9E7L89X1FJYYzMgP58ZTqxPQVsAvAEJnIghTxN1DL4f3hzfVQmHXRbXog4rYypKOhAX"
    "QMGup/XwnKJEVpd7rKldxVFKkAYioxOdqYY88BGPImvP6zVtvdPaxt7x4c7e8dHu4fbR8x"
    "WdHeZNXhvduYAC33UQKz5odmu8sbRJhJXbPzgnuhAyl0tYQxAvS5qRLwZ2LvST8M/gzqPP"
    "RnBQH8wRh8PPxrO3uHe0e7B3s+7H5JHtozZAMkVQvxziuQJgE9ZTUUj1A6qlHNGLiap7o1"
    "+2c5UD/mSM+Bsds8l6+69fML/viRbd8aAq56V+Y1NVE6jZW+OHgZHeX+Q8Bfze5HwH+Cb5"
    "22LNAkNuWrXkSu+03ibYIOJYpJJgrUwkDOimdFESv7iyifUUlDf7rqtNONnFCM2xmrFPwH"
    "DGyv42TKMTGHJGLd9pf6ZeNj/fLFef1rzJLtRqtzEjcbf8BJbLLx/Sxt47i+bp6m4x9oxI"
    "B3HKxtcb3Ngl0gvOtOlTCaoqf393w7HtykbgneJh4F9oxYCA/Nz2gq4G2yZkBTRSl4evyE"
    "kROVDXfW+k/u89YT2qA0WDQtOPF5TGhcMQxYzxEVKDTqV436qSwJoPtQvZlAS1MiiPMaUi"
    "OxEl82WTWqjeIl0IRDgQ3vBG9yKvop9DFhnmzuOPZFFdbZFfDGGFP8LpEJGyr8PaGd8Uch"
    "Apm9Dix/DXiYRUrvBo6pcmiAeBP/s/deKt2ikEsUKaSOnUS6oUNLNp1RYlmIEkdfO4Y8a/"
    "iKCI00RqbGcSoGs3Qht0+b7Q/HwNPvmReXnYZ8deUW+pOhZzY65xctuSufHgOVjMZ86ms9"
    "86zebPGiAcQG/92otxtySxSpHBuDlUrzMdQR/KkYyBxSnf3cOcgx7GxL3Ylzo9lmWxNV0U"
    "2UEgoN5Q5riKQYNvMQEFd7vNPA9pocBbxBwhauwuCmqVYAxwF251ZxdBN6FbRxaA1oU6WY"
    "VyCsUgGa8AuIRV+xEOuaTVGat4sQA0EzwzmQoh4Duc/0V4WyX/K4ROWk02lFDo0nzZhrq3"
    "19fiKzDU/sd0wIU5SOv3WrZJ0WOXdJRz2itBBl8fhIWY4zUS5xsDcHlzjYy+QSvGqdvV+P"
    "Cz3roNYxjak3KtbEHeYN4FxvGKP11mJWj2ouweolm29rYuS5fJ4DbGJbX8jMMdXKzmW2s4"
    "7YnOyz1XgBQ8d118bSbHUeMAzZGAX9KaA6AhNi3SALTHR2VgCYAp0Ymi1qGCV4K/5hq5eB"
    "XrOfQNWRegP4Cm8z2fi5fukP3+DRxyMfBX36IZXKqR8jZMKHWhDPsE4FaH6UZBao+80wyR"
    "fuimitddDvwRBJaJqmx0gS43YJwF7baEme5VJiGp6qRQNPAdhBJlDMI+HpnX2+RAYUfcgE"
    "Oi0RaUNAjwzMLGdjEazEbC8P9eFsA4/GxKKcfTDyASnwjuPsB7aB6PPbMHGZ+adtALnOH5"
    "6MPV9EIxPoVcZCxUqQEgKdrRDZkU+HSaw+3lkFNp80sMmNLP5PYJ3tHgzrLCeg+bSpiCt2"
    "Do6hbbP1Q1N0aOtFcE4orip6/IS+2Nr+/hx4M6lMwEVd5Y59nu7YxBFlHt43y+NZnMlsan"
    "pXwiWxDMa3Yee7lbI1lyKn0DWfO2fztYCKrjhBzUuRZNMXi+cxge++R6BKWisNt7OJY6mF"
    "mF2gUWaqIfUkndLxC/vl8Zs3W1tbPQkMiAWuL1v2K9CT3DPd8TtLLE93CIwh1d8zISbTk5"
    "yxQaCWrE04r1f1knw6tL13NA8fYmLZhEhUxpLdMDUKjQRfocwDYUHOub+9PQfGTCoTYlEX"
    "Y/mz1TABcna2W0iltJlDfivBBFMdmwBTO+Q2eQVs4jpDQs4RdycCTBjyeA5rLJsWmutviM"
    "yxJT97xblMZU8CTtp69VnAl3L99O9jEaWbxrN/5/OKrTrPV3MswVKVFMudsWU6Y3JG1WIm"
    "G3C90ngyl0EzTjvXJy0ZXFzKjeZV0/tmyT/diUpeFKSaMcO3YkhPsEZTHByZ658vv9DiVz"
    "Jsl73Y6AgP9RT/RSaagUIFZ0rO9LjY9Pfkq3k/x7wXWzLDTkNqEYoZU6vyTB92JUNHwwsg"
    "HVOrkH4Y6T6mHIwU91fO5QwhpQ1agx/ljoYQy8b/IqU/pSjN95gDflSvwn9R/KnujPomI/"
    "AKd1oU8hkkNDdvpdnZrs2z1nCx7DOKqIyijiyLpCT+dNHPjOHuK2wCxnlRKPlrNxKASlyg"
    "4NOVVqf9YSYev1WhChA+zwBh+oepxe0e112bDO9nmcv/RBekbHji2m/mZFcp7lVGdimyhw"
    "tlZD/NfUDrv5Is89k9sz8FfqwImhpg08IZcbkBZXr8EfwzfEBM5L6IPV6EJHg4NghGLPeS"
    "IwYqaF+3Wk91y1EwVbPyRWbz+IGcEcXP9KluNnp2SSJFk3+Xm/j71IedWPLFPHkBtZy8gF"
    "oyL6A6amajv7lHzer7w9Wy3eo7uUf8Tq7Kly7dJ3JrA9AqCXAdWVjVpRT269XkUl8YyJTm"
    "+7bncu37b6Z1ZLPZO2TZqUmYOWkIgcomctpVfF/FJ1UBhD3xDUR3Z64Tw07OiWEn5cRATO"
    "p9SR5FOPt69ZBKdbF6wYvVC3xCtvzN7P5/VSd5sw=="
)
