-- 010_operator_api.sql — what the operator's API reads (issue 13): run
-- progress over every stage of the pipeline version, and rejected uploads.

-- A run's progress is the mean over ALL the stages of its pipeline version:
-- a stage with no job yet counts 0, a succeeded one 1, a running one its
-- reported progress. (003's view averaged only the jobs created so far, so a
-- run read 70 % while its first stage trained and fell when the next stage
-- was enqueued.) Jobs outside a stage cannot exist in a run; a stage has one
-- job (retries reuse it).
-- eta_seconds: elapsed time since the run started scaled by what is left,
-- only while running and once there is progress to scale; it assumes every
-- stage's share of the run is its share of the time, so it is an estimate
-- that moves smoothly as progress moves, never a promise.
CREATE OR REPLACE VIEW run_status AS
SELECT r.id AS run_id, r.pipeline, v.version AS pipeline_version, r.state, r.trigger, r.created_at, r.started_at,
       r.finished_at, extract(epoch FROM coalesce(r.finished_at, now()) - coalesce(r.started_at, r.created_at))
           AS seconds,
       st.total AS stages_total,
       (SELECT count(*) FROM jobs j WHERE j.run_id = r.id AND j.state = 'succeeded') AS stages_succeeded,
       (SELECT string_agg(j.stage, ',' ORDER BY j.id) FROM jobs j WHERE j.run_id = r.id AND j.state = 'running')
           AS running_stages,
       pr.progress,
       r.error,
       CASE WHEN r.state = 'running' AND r.started_at IS NOT NULL AND pr.progress > 0 AND pr.progress < 1
            THEN round(extract(epoch FROM now() - r.started_at) * (1 - pr.progress) / pr.progress)::integer
            WHEN r.state = 'succeeded' THEN 0 END AS eta_seconds
FROM runs r JOIN pipeline_versions v ON v.id = r.pipeline_version_id
CROSS JOIN LATERAL (SELECT count(*) AS total FROM jsonb_object_keys(v.parsed->'stages')) st
CROSS JOIN LATERAL (
    SELECT CASE WHEN st.total = 0 THEN NULL
                ELSE least(1, coalesce(sum(CASE WHEN j.state = 'succeeded' THEN 1
                                               ELSE least(greatest(coalesce(j.progress, 0), 0), 1) END), 0)::float8
                              / st.total) END AS progress
    FROM jobs j WHERE j.run_id = r.id) pr;

-- Uploads atelierd refused: why, how big, from where; never the pixels.
-- Bounded twice: rows older than 30 days go, and so does anything beyond the
-- newest 100,000 (a flood of bad uploads must not grow the table without
-- end). Both prunes run from atelier_record_rejection every 500th row, so
-- the insert path stays one statement.
CREATE TABLE rejected_uploads (
    id            bigserial PRIMARY KEY,
    domain        text NOT NULL CHECK (domain IN ('sketch', 'painting')),
    reason        text NOT NULL,                 -- an error code name (lib/err.h): UNSUPPORTED, CORRUPT, ...
    detail        text,                          -- the message the client got
    size          bigint NOT NULL CHECK (size >= 0),
    content_type  text,
    source        text,
    contributor   text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_uploads_created ON rejected_uploads (created_at);

CREATE FUNCTION atelier_record_rejection(p_domain text, p_reason text, p_detail text, p_size bigint,
                                         p_content_type text, p_source text, p_contributor text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO rejected_uploads (domain, reason, detail, size, content_type, source, contributor)
        VALUES (p_domain, p_reason, left(p_detail, 256), p_size, left(p_content_type, 128), left(p_source, 128),
                left(p_contributor, 128))
        RETURNING id INTO v_id;
    IF v_id % 500 = 0 THEN
        DELETE FROM rejected_uploads WHERE created_at < now() - interval '30 days' OR id <= v_id - 100000;
    END IF;
    RETURN v_id;
END $$;

-- For dashboards: rejections per domain, reason and day (ingest_daily's twin).
CREATE VIEW rejected_daily AS
    SELECT domain, reason, date_trunc('day', created_at) AS day, count(*) AS rejected
    FROM rejected_uploads GROUP BY 1, 2, 3;

-- Job logs: the lines a worker logged while running a job (workers/joblog.c
-- ships them in batches, about once a second). Bounded per job: the newest
-- 2,000 lines and 256 KiB of text are kept; older ones are deleted and
-- counted in job_log_state.dropped, which readers show as a marker line.
-- seq numbers a job's lines 1, 2, ... across its attempts, in the order the
-- batches arrive (a worker sends one batch at a time per job).
CREATE TABLE job_log_state (
    job_id    bigint PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    next_seq  bigint NOT NULL,
    bytes     bigint NOT NULL DEFAULT 0,   -- text bytes of the lines kept
    dropped   bigint NOT NULL DEFAULT 0
);
CREATE TABLE job_logs (
    job_id  bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     bigint NOT NULL,
    ts      timestamptz NOT NULL,
    level   text NOT NULL,
    text    text NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- p_lines: [[epoch_ms, level, text], ...]; p_dropped: lines the worker
-- itself could not keep (its buffer was full). Returns the last seq stored.
-- The kept lines are always the newest, a run of seqs ending at the last, so
-- the line bound is one primary-key range delete; the byte bound needs a
-- scan of the kept lines only when their bytes (tracked in job_log_state)
-- are over it. (A window over every kept line on each batch cost 9 ms.)
CREATE FUNCTION atelier_job_log_append(p_job bigint, p_lines jsonb, p_dropped bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer := jsonb_array_length(p_lines);
    v_add bigint;
    v_first bigint;
    v_last bigint;
    v_bytes bigint;
    v_cut bigint;
    v_gone bigint := 0;
    v_gone_bytes bigint := 0;
BEGIN
    SELECT coalesce(sum(octet_length(left(e->>2, 2048))), 0) INTO v_add FROM jsonb_array_elements(p_lines) e;
    INSERT INTO job_log_state AS s (job_id, next_seq, bytes, dropped) VALUES (p_job, 1 + v_n, v_add, p_dropped)
        ON CONFLICT (job_id) DO UPDATE
            SET next_seq = s.next_seq + v_n, bytes = s.bytes + v_add, dropped = s.dropped + p_dropped
        RETURNING s.next_seq - v_n, s.bytes INTO v_first, v_bytes;
    v_last := v_first + v_n - 1;
    INSERT INTO job_logs (job_id, seq, ts, level, text)
        SELECT p_job, v_first + e.ord - 1, to_timestamp((e.v->>0)::float8 / 1000), left(e.v->>1, 8),
               left(e.v->>2, 2048)
        FROM jsonb_array_elements(p_lines) WITH ORDINALITY e(v, ord);
    WITH d AS (DELETE FROM job_logs WHERE job_id = p_job AND seq <= v_last - 2000 RETURNING octet_length(text) AS b)
        SELECT count(*), coalesce(sum(b), 0) INTO v_gone, v_gone_bytes FROM d;
    IF v_bytes - v_gone_bytes > 262144 THEN
        SELECT min(seq) INTO v_cut FROM (
            SELECT seq, sum(octet_length(text)) OVER (ORDER BY seq DESC) AS acc
            FROM job_logs WHERE job_id = p_job) k
            WHERE acc <= 262144;
        WITH d AS (DELETE FROM job_logs WHERE job_id = p_job AND seq < v_cut RETURNING octet_length(text) AS b)
            SELECT v_gone + count(*), v_gone_bytes + coalesce(sum(b), 0) INTO v_gone, v_gone_bytes FROM d;
    END IF;
    IF v_gone > 0 THEN
        UPDATE job_log_state SET dropped = dropped + v_gone, bytes = bytes - v_gone_bytes WHERE job_id = p_job;
    END IF;
    RETURN v_last;
END $$;

-- One page of a job's log after seq p_after, as GET /v1/jobs/{id}/log
-- answers it; NULL when there is no such job. When lines were dropped before
-- this page, a marker line (level "warn", seq just before the first kept
-- line) says how many.
CREATE FUNCTION atelier_job_log_page(p_job bigint, p_after bigint, p_limit integer) RETURNS json
LANGUAGE sql STABLE AS $$
    WITH page AS (
        SELECT seq, ts, level, text FROM job_logs WHERE job_id = p_job AND seq > p_after ORDER BY seq LIMIT p_limit),
    st AS (
        SELECT coalesce(s.dropped, 0) AS dropped, (SELECT min(seq) FROM job_logs WHERE job_id = p_job) AS first_seq
        FROM jobs j LEFT JOIN job_log_state s ON s.job_id = j.id WHERE j.id = p_job),
    marked AS (
        SELECT st.first_seq - 1 AS seq, NULL::timestamptz AS ts, 'warn' AS level,
               st.dropped || ' earlier lines dropped (a job keeps its last 2000 lines, 256 KiB)' AS text
        FROM st WHERE st.dropped > 0 AND st.first_seq IS NOT NULL AND p_after < st.first_seq - 1
        UNION ALL SELECT * FROM page)
    SELECT json_build_object('job', j.id, 'state', j.state, 'dropped', st.dropped,
           'lines', coalesce((SELECT json_agg(json_build_object('seq', m.seq, 'ts', m.ts, 'level', m.level,
                                                                'text', m.text) ORDER BY m.seq) FROM marked m), '[]'),
           'next_after', coalesce((SELECT max(seq) FROM page), p_after))
    FROM jobs j, st WHERE j.id = p_job
$$;
