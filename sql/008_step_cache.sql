-- 008_step_cache.sql — step caching, "seen" data and skipped runs
-- (docs/training.md, "Caching and skipping").
--
--   * Step cache. A worker that starts a cacheable stage (prepare, train,
--     evaluate: one flag per kind in workers/handlers.c) computes a key —
--     sha256 over the kind, model, canonical params, gate, inputs (the results
--     of the stages it needs) and the worker's code version — and stores it in
--     jobs.cache_key. If job_cache names a succeeded job with that key, the job
--     completes at once with that job's result and jobs.cached_from names the
--     source. A job that succeeds by running adds its key to job_cache.
--     The lookup table is apart from jobs on purpose: an index on jobs would be
--     one more index entry (or predicate) on every claim and completion (docs/
--     queue.md); the two new jobs columns are NULL for every other job and cost
--     nothing there. job_cache has no foreign key for the same reason (a
--     foreign key puts a trigger on jobs); lookups join jobs and require
--     state = 'succeeded', so an entry whose job is gone is never used.
--   * Stages carry `cache` (YAML, default true) into the job payload; only
--     payloads with "cache": true are looked up, so jobs enqueued by hand are
--     never cached.
--   * datasets.pipeline: the pipeline whose run froze it (collect's payload),
--     so "seen" (in any dataset of this pipeline), replay and reuse are one
--     indexed lookup; datasets.sketch_watermark: the highest accepted training
--     sketch id in collect's snapshot, which the new_sketches trigger counts
--     from.
--   * runs.state 'skipped': a run whose collect froze the same data as the last
--     succeeded run of the same pipeline version ends there (collect's result
--     carries "skip": REASON; runs.error holds the reason).

ALTER TABLE jobs ADD COLUMN cache_key text, ADD COLUMN cached_from bigint;

CREATE TABLE job_cache (
    cache_key   text PRIMARY KEY CHECK (cache_key ~ '^[0-9a-f]{64}$'),
    job_id      bigint NOT NULL,      -- the first job that succeeded with this key (no FK: see above)
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE datasets ADD COLUMN pipeline text, ADD COLUMN sketch_watermark bigint;
-- Datasets frozen before this migration: their run's pipeline, and the newest
-- sketch they hold as the watermark (at most what their snapshot saw), so what
-- a pipeline has seen does not start from nothing after the upgrade.
UPDATE datasets d SET pipeline = r.pipeline FROM runs r WHERE r.id = d.run_id;
UPDATE datasets d SET sketch_watermark = (SELECT max(m.image_id) FROM dataset_members m JOIN images i
                                          ON i.id = m.image_id WHERE m.dataset_id = d.id AND i.domain = 'sketch');
CREATE INDEX datasets_pipeline ON datasets (pipeline, id DESC) WHERE pipeline IS NOT NULL;
-- "is this image in any dataset of pipeline P" (collect's new/replay split)
CREATE INDEX dataset_members_image ON dataset_members (image_id);

ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check
    CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped'));

-- As in 003, and: the payload carries the stage's `cache`; a succeeded job
-- whose result says "skip" ends the run as 'skipped' (nothing after it runs).
CREATE OR REPLACE FUNCTION atelier_advance_run(p_run bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r runs;
    v_parsed jsonb;
    v_stage text;
    v_def jsonb;
    v_job jobs;
    v_ready boolean;
    v_need text;
    v_inputs jsonb;
    v_total integer := 0;
    v_done integer := 0;
    v_active integer;
BEGIN
    SELECT * INTO r FROM runs WHERE id = p_run FOR UPDATE;
    IF NOT FOUND OR r.state NOT IN ('queued', 'running') THEN
        RETURN r.state;
    END IF;
    SELECT parsed INTO v_parsed FROM pipeline_versions WHERE id = r.pipeline_version_id;
    IF r.state = 'queued' THEN
        SELECT count(*) INTO v_active FROM runs WHERE pipeline = r.pipeline AND state = 'running';
        IF v_active >= coalesce((v_parsed->>'concurrency')::int, 1) THEN
            RETURN 'queued';
        END IF;
        UPDATE runs SET state = 'running', started_at = clock_timestamp() WHERE id = p_run;
        PERFORM pg_notify('atelier_runs', json_build_object('run', p_run, 'state', 'running')::text);
    END IF;

    -- A terminal failure or cancellation of any stage ends the run; so does a
    -- stage that succeeded saying there is nothing to do.
    SELECT * INTO v_job FROM jobs
     WHERE run_id = p_run AND (state IN ('failed', 'cancelled') OR (state = 'succeeded' AND result ? 'skip'))
     ORDER BY id LIMIT 1;
    IF FOUND THEN
        IF v_job.state = 'succeeded' THEN
            PERFORM atelier_finish_run(p_run, 'skipped', v_job.result->>'skip');
            RETURN 'skipped';
        END IF;
        PERFORM atelier_finish_run(p_run, v_job.state,
            CASE WHEN v_job.state = 'failed' THEN 'stage ' || v_job.stage || ' failed: ' || coalesce(v_job.error, '?')
                 ELSE 'stage ' || v_job.stage || ' cancelled' END);
        RETURN v_job.state;
    END IF;

    FOR v_stage, v_def IN SELECT key, value FROM jsonb_each(v_parsed->'stages') ORDER BY key LOOP
        v_total := v_total + 1;
        SELECT * INTO v_job FROM jobs WHERE run_id = p_run AND stage = v_stage ORDER BY id DESC LIMIT 1;
        IF FOUND THEN
            IF v_job.state = 'succeeded' THEN
                v_done := v_done + 1;
            END IF;
            CONTINUE;
        END IF;
        -- not started: ready when every need has succeeded; its payload carries their results
        v_ready := true;
        v_inputs := '{}';
        FOR v_need IN SELECT jsonb_array_elements_text(v_def->'needs') LOOP
            SELECT * INTO v_job FROM jobs WHERE run_id = p_run AND stage = v_need AND state = 'succeeded'
                ORDER BY id DESC LIMIT 1;
            IF NOT FOUND THEN
                v_ready := false;
                EXIT;
            END IF;
            v_inputs := v_inputs || jsonb_build_object(v_need, coalesce(v_job.result, '{}'));
        END LOOP;
        IF v_ready THEN
            PERFORM atelier_enqueue(
                -- test-only kinds run as test.KIND in the worker's handler table (lib/stage_kind.h's
                -- job kind column; tests/unit/test_queue.c checks this list against it)
                kind => CASE WHEN v_def->>'kind' IN ('sleep', 'fail', 'crash', 'noop') THEN 'test.' || (v_def->>'kind')
                             ELSE v_def->>'kind' END,
                payload => jsonb_build_object('run', p_run, 'pipeline', r.pipeline, 'model', v_parsed->>'model',
                                              'stage', v_stage, 'params', coalesce(v_def->'params', '{}'),
                                              'gate', coalesce(v_def->'gate', '[]'), 'inputs', v_inputs,
                                              'pipeline_version_id', r.pipeline_version_id,
                                              'cache', coalesce((v_def->>'cache')::boolean, true)),
                run_id => p_run,
                stage => v_stage,
                max_attempts => 1 + coalesce((v_def->>'retries')::int, 0),
                timeout_s => greatest(1, ceil(coalesce((v_def->>'timeout_ms')::bigint, 3600000) / 1000.0))::int,
                needs_gpu => coalesce((v_def->'resources'->>'gpu')::int, 0));
        END IF;
    END LOOP;
    IF v_done = v_total THEN
        PERFORM atelier_finish_run(p_run, 'succeeded', NULL);
        RETURN 'succeeded';
    END IF;
    RETURN 'running';
END $$;

-- new_sketches: N accepted training sketches this pipeline has not seen —
-- above the highest watermark of the datasets its runs froze (and of its runs'
-- creation, so a run that failed before freezing anything, or a pipeline
-- without a collect stage, does not fire again on the same sketches). While
-- one of its runs is queued or running and has not frozen its dataset yet,
-- that run will take what arrives, so nothing fires. The count is a range scan
-- of images_domain_split_id that stops at N rows, whatever the table's size.
-- every: the last run is older than the interval. Pipelines are locked one at
-- a time so two leaders (during a hand-over) cannot both fire.
CREATE OR REPLACE FUNCTION atelier_check_triggers() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    p record;
    v_n integer;
    v_every bigint;
    v_mark bigint;
    v_last timestamptz;
    v_count bigint;
    v_made integer := 0;
    v_run bigint;
    v_coalesced boolean;
BEGIN
    FOR p IN SELECT pl.name, v.parsed FROM pipelines pl JOIN pipeline_versions v ON v.id = pl.current_version_id
             ORDER BY pl.name LOOP
        v_n := coalesce((p.parsed->'triggers'->>'new_sketches')::int, 0);
        v_every := coalesce((p.parsed->'triggers'->>'every_ms')::bigint, 0);
        CONTINUE WHEN v_n = 0 AND v_every = 0;
        PERFORM 1 FROM pipelines WHERE name = p.name FOR UPDATE;
        SELECT coalesce(max(sketch_watermark), 0), max(created_at) INTO v_mark, v_last
            FROM runs WHERE pipeline = p.name;
        -- `every:` counts from the last run, or from when the pipeline was first applied
        IF v_last IS NULL THEN
            SELECT created_at INTO v_last FROM pipelines WHERE name = p.name;
        END IF;
        IF v_n > 0 AND NOT EXISTS (
                SELECT 1 FROM runs r WHERE r.pipeline = p.name AND r.state IN ('queued', 'running')
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = r.id AND j.kind = 'collect'
                                      AND j.state = 'succeeded')) THEN
            SELECT greatest(v_mark, coalesce(max(d.sketch_watermark), 0)) INTO v_mark
                FROM datasets d WHERE d.pipeline = p.name;
            SELECT count(*) INTO v_count FROM (
                SELECT 1 FROM images WHERE domain = 'sketch' AND split = 'train' AND status = 'accepted'
                    AND id > v_mark LIMIT v_n) s;
            IF v_count >= v_n THEN
                SELECT run_id, coalesced INTO v_run, v_coalesced FROM atelier_create_run(p.name, 'new_sketches');
                IF NOT v_coalesced THEN
                    v_made := v_made + 1;
                END IF;
                CONTINUE;
            END IF;
        END IF;
        IF v_every > 0 AND v_last <= now() - make_interval(secs => v_every / 1000.0) THEN
            SELECT run_id, coalesced INTO v_run, v_coalesced FROM atelier_create_run(p.name, 'schedule');
            IF NOT v_coalesced THEN
                v_made := v_made + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN v_made;
END $$;
