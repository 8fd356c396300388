from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "processing_jobs" ADD "priority" VARCHAR(8) NOT NULL DEFAULT 'normal';
        ALTER TABLE "processing_jobs" ADD "name" VARCHAR(200) NOT NULL DEFAULT '';
        ALTER TABLE "processing_jobs" ADD "source" VARCHAR(16) NOT NULL DEFAULT 'import';
        ALTER TABLE "processing_jobs" ADD "retry_of_id" UUID;
        COMMENT ON COLUMN "videos"."status" IS 'PENDING: pending\nPROCESSING: processing\nREADY: ready\nFAILED: failed\nCANCELLED: cancelled';
        COMMENT ON COLUMN processing_jobs."priority" IS 'HIGH: high\nNORMAL: normal\nLOW: low';
COMMENT ON COLUMN processing_jobs."name" IS 'shown wherever the job is shown: given at submission or derived from its source';
COMMENT ON COLUMN processing_jobs."source" IS 'CSV: csv\nJSON: json\nUPLOAD: upload\nRETRY: retry\nDEMO: demo\nIMPORT: import';
COMMENT ON COLUMN processing_jobs."retry_of_id" IS 'the job whose failed videos this job retries';
        ALTER TABLE "processing_jobs" ADD CONSTRAINT "fk_processi_processi_50981b54" FOREIGN KEY ("retry_of_id") REFERENCES "processing_jobs" ("id") ON DELETE SET NULL;
-- hand-written backfill: jobs created before names and sources were kept
UPDATE "processing_jobs" SET "name" = 'Import · ' || "total_videos" || CASE WHEN "total_videos" = 1 THEN ' video' ELSE ' videos' END WHERE "name" = '';"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "processing_jobs" DROP CONSTRAINT IF EXISTS "fk_processi_processi_50981b54";
        COMMENT ON COLUMN "videos"."status" IS 'PENDING: pending\nPROCESSING: processing\nREADY: ready\nFAILED: failed';
        ALTER TABLE "processing_jobs" DROP COLUMN "priority";
        ALTER TABLE "processing_jobs" DROP COLUMN "name";
        ALTER TABLE "processing_jobs" DROP COLUMN "source";
        ALTER TABLE "processing_jobs" DROP COLUMN "retry_of_id";"""


MODELS_STATE = (
    "eJztXetz4rYW/1c0/nK3M9s0Ic9LO50hhOyyJZAhZNvbZccjsMBqjMTaclhum/+9kvx+EU"
    "wwAeIvCUjn2NbvSEdH52H+ViZUQ4Z18IkObk06NpFlNR4RYUoV/K0QOEH8QybNe6DA6TSg"
    "EA0MDgzJ9BcdqFOXXEWCXvbDgcVMOBQ3GEHDQrxJQ9bQxFOGKeGtxDYM0UiHnBCTcdBkE/"
    "zNRiqjY8R0ZPKOL1/EbcRlLfRN+fqVf8BEQ9+RJTrF1+mDOsLI0CLjwZpgke0qm09l2yUe"
    "Nwm7lrTi9gN1SA17QgL66ZzplPgM2AFgjAgyIUPiDsy0xXjE47ooeEN0Hj0gcZ4yxKOhEb"
    "QNFhr/QA3aFFVtd3rqXaOnqkoOxIaUCLSxwF4AMBaP8ON/K5Xj4/PK4fHZxenJ+fnpxeEF"
    "p5XPm+w6f3IeJkDLuZTErPmh2e6JB6JcpI7YRcOT5IEMOlxSGAH6QlQJ+DOxd6mfB9+Deh"
    "H6XkMAfzAHN4d/5ejk/OTi+OzEh91vWYS2h2yA5NBEYvAqZElAr3gPwxOUjmqUMwau5rIe"
    "eB/WA/UmZ/oCGHvNm8Zdr3ZzKy4/saxvhoSr1muInopsncda3539EJ3l/kXA783eRyC+gj"
    "877YZEk1pMaL0IXe9PRTwTtBlVCZ2pUAsD6TV7TREp+0pUrKikoD/dddrpQk4wxuWMhwz8"
    "Awxs7eJiWiBiAUlEuu3PtW79Y6377qb2R0yS7XqrcxkXm7jAZWyxif0sbeO4v29epeMfcM"
    "SAt22sHQi+/YJdInzsLJUwmnKkT09iOx49pG4J7iYeBfaamgiPyW9oLuFt8seAZIhS8HTt"
    "E26cDPl050//ybnebkIbtAZK04Qz344JzSuOAR85YhKFeu2uXrtqKBLoARw+zKCpqRHERQ"
    "+t0FiLT5vsmlQm8RZI4FhiIwYhHjkV/RTzMSGebNtx6pOqfLAF2I0xS/GLQmd8qoj7hHbG"
    "r7kMyGw9sH4d8LwVqfwysslQQAPkncSfk1+VrVMKCw1FBpltJZGu69BsEHuSUAtRw9Hnji"
    "HPH7wgg0aZIqIJnPLBrNw22lfN9ocqcPn75LbbqTfu7pxGfzH0Sb1zc9tq9BpXVTCkk6lY"
    "+lqfXNeaLdE0gtgQ3+u1dr3Rkk1DgY3BW5XlLNQJ/K4aiIyZzr8enS0QrLelHsVtI2+zrc"
    "iu6CYq/6cKNH3pePRFiTCp35W8wrN0rjvAjCsWfsg1AdcwgOssgC0ge6pgjPnhF0AGLHsw"
    "wVyQfE1SE2jI5B0aGJl0AjDj5NQ23XkcklMR118o9Mrh4RJS51SZYpd9UbkH915pKfvcG5"
    "wHeDKlJss7G+p3n/misx77RNiQVfCXRUmf3N+2OjW+Gu2pQSFfoN1Gr/u/KjARM+d9ctW4"
    "6VS5vCa0T5o3t51urwpCd3/1RTs1MTUxm68qvjD/BgVIqDmBRl4Bfmx++FgFOh7rfdLudG"
    "9qLQ67vFKftDq/V4HBj2kriOViCalcZArlIi4TRhk01EesIZqyQ2Z6U+Jsm3OrHBZkeqzb"
    "p+LuttwCzA1uGmsJcBxgx0jJj26Cr4Q2Dq0BLabmc6+GWUpAEw5WaT2rJuJDsxhKCxtQai"
    "BIMrysKewxkAecvyiU/ZbNnvguO51WxPt22YzFCNr3N5cNboTI7Y4TYYbS8Te/qVlut+wz"
    "Q4RpJXvDPdhti18oakicnSxhSZydZJoSomuXwwibhZ4PUOsQY+7Oih2JK7gTeGFYgRvr5m"
    "pSj3KuQepbtt52RMhLBY9GmGBLX0nMMdZSztssZx3xNTng2ngFQcd5d0bSXDuPOIZ8joLB"
    "XHrGZtR8QCaY6fysADADOjU0y/OZ/Sw/cO1loB+FC22oo+EDEBre4rQJx9u6L77Hs0+EkH"
    "MGR0MsZXQ0ZpDJYFROPMM8JaDxc4RwtKp0lBPTGNsLYN2QPvSCAzOdWsgNBwHHY8LVE7Zk"
    "pxgVRtZyTsxCwv1exskL4/2fxcBaO5298mysP6Qm04P9Cb2xBmDvLVSYW34LMA2ryudB9Z"
    "TAGnDNm6CyA1ojN/OKMoup4ojY+LhA+77VWpT5EsgzSEWOefJcvuvfusiAEptMQaZlQu/J"
    "YknMfVduq4O1h7P+BZBmxT3yICo3vu1C0olXS8yYDhlwPYMOknLMP4fPUF6ozAJQ8PzHpX"
    "kp0EXmt8lNMSWtzdsss7PZbE5RfA5bmaz2qslqQsh5s5vCPOtJjHjd8pKC4xRTaFlcf2iq"
    "Di09D84Jxs1loWwM7srp6TJpW6en2Wlboq+MDL3NyFDitL6MKe3lZm/ONty2WbCUySfO8O"
    "uw+PbM1VGoteaYyCnmmm87Z9trgSlacNGBW/bCly+W1+MEX3znWFmIsDW23aLs5YwQ+Stk"
    "LK9wcusrOmPTd9YP1Z9+Ojg46CtgRE1w321Z70HfzYCu/mJK9fSIwBQy/VdOxGn6ipPLnO"
    "xNeIiKuskzWewny2TcCrIFeewnybxbzIxcM8Fn2OaJsKLNebpUqcDpglKB02SpgK8NEyBn"
    "J96GWLY2idF/SjDDTMdE1mQEbpP3wKKOMyTkHHHdUZwYitAyf1i+LDTH3xBZY2u+dsFpld"
    "te2JVSTFB4ZVe3UbuSJSFQm+9SRZdmm9J2VVPkec2Vd8aSjbLFBDkSfFvj31yH8XHVub9s"
    "NcBtt1Fv3jXd6nT/zCc7RVOQC8unQyuG9AxrLMXtkakVffqVVOKWYbtuFaQjPNZTvBqZaA"
    "YMJZwpRR3TfMvfpS/X/RLrXm7UHDsNDfMYnjG2MhH+eQcztDW8AtIxthLp55EeYCbASHGK"
    "LXgNV4hpj3TwRt7GFbK98f+ROpiz1Kj+AvCjfCX+q+LPdHsyINysV4UrI5cnIcG5f5rm6L"
    "CyjK4RZNlnFNkZRR2ZJk3JjOuh7xnT3WfYB4wXxaYaf/QiYanEq7J8c6XVaX/wyOPvzyrD"
    "hm8zbJheOZ9f7nHenSlBeZPFRq/0Krw9T2d7YY1DWYNTlixsRXp9rpKF13nz4+5rknVeu0"
    "8Gc+BHkCDRAF8W9kTQjZj7yjHxnhBACXJuxC8vAxUiSOuEKFKiRsvOl4zXWS6T1V94Bolc"
    "qllZJN46fiaTRPXzf8p3WL651JHtf+Hh5jJUi3ixYHnUzEZ/f4+aZYF0sdZuWUi6pkLSMo"
    "v6JXi/WuHczgBUpAFcQyYe6kqK9ev2LDR9YUCzNVVvb+UHfl6Y1pFtzT4i00pNzVyQhhCw"
    "7KNNW0TVlVhUORB2yfcQ3aOlTgxHC04MRyknBkqYW7IfRTj7h3RCLOVP6OT8CZ0chWXr38"
    "ye/gWnW7xb"
)
