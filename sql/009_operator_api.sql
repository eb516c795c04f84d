-- 009_operator_api.sql — what the operator's API reads (issue 13): run
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
