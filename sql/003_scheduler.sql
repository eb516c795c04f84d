-- 003_scheduler.sql — pipeline versions, triggers and the run state machine.
--
-- The run state machine lives in the database, next to the queue it drives,
-- so it is transactional and any atelierd (or none) can nudge it:
--
--   atelier_apply_pipeline(name, yaml, parsed, sha)  -> (version_id, version, created)
--   atelier_create_run(pipeline, trigger)            -> (run_id, coalesced)
--   atelier_advance_run(run_id)                      -> the run's state after advancing
--   atelier_check_triggers()                         -> runs created (new_sketches and every:)
--   atelier_cancel(run_id)                           -> the run's state
--   atelier_tick()                                   -> the leader's periodic work (reap, triggers, safety)
--
-- A trigger on jobs (since 006: atelier_notify_run, which every state change
-- calls) advances a job's run in the same transaction that finished
-- the job: when a worker completes stage A, the jobs for the stages that only
-- waited on A are enqueued (and NOTIFY idle workers) before that commit
-- returns. So a stage hand-off costs no scheduler round trip.
--
-- A run reads its stages from the pipeline version it was created with
-- (pipeline_versions.parsed: {"stages": {NAME: {kind, needs, params,
-- resources: {gpu, cpu}, retries, timeout_ms, gate}}, "concurrency": N, ...}),
-- so applying a new version never changes a run in flight.

ALTER TABLE runs ADD COLUMN sketch_watermark bigint NOT NULL DEFAULT 0;  -- max image id when the run was created
ALTER TABLE runs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

CREATE FUNCTION atelier_apply_pipeline(p_name text, p_yaml text, p_parsed jsonb, p_sha text,
                                       OUT version_id bigint, OUT version integer, OUT created boolean)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pipelines (name) VALUES (p_name) ON CONFLICT (name) DO NOTHING;
    -- Serialise applies of one pipeline: version numbers stay dense.
    PERFORM 1 FROM pipelines WHERE name = p_name FOR UPDATE;
    SELECT v.id, v.version INTO version_id, version FROM pipeline_versions v
        WHERE v.pipeline = p_name AND v.sha256 = p_sha;
    IF FOUND THEN
        created := false;
        -- Re-applying an older version makes it current again.
        UPDATE pipelines SET current_version_id = version_id, updated_at = now()
            WHERE name = p_name AND current_version_id IS DISTINCT FROM version_id;
        RETURN;
    END IF;
    SELECT coalesce(max(v.version), 0) + 1 INTO version FROM pipeline_versions v WHERE v.pipeline = p_name;
    INSERT INTO pipeline_versions (pipeline, version, yaml, parsed, sha256)
        VALUES (p_name, version, p_yaml, p_parsed, p_sha) RETURNING id INTO version_id;
    UPDATE pipelines SET current_version_id = version_id, updated_at = now() WHERE name = p_name;
    created := true;
END $$;

-- A new run of the pipeline's current version. Coalescing: when the pipeline
-- already has a run waiting to start, that run is returned instead of a new
-- one (further triggers fold into one queued run).
CREATE FUNCTION atelier_create_run(p_pipeline text, p_trigger text, OUT run_id bigint, OUT coalesced boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_version bigint;
BEGIN
    SELECT current_version_id INTO v_version FROM pipelines WHERE name = p_pipeline FOR UPDATE;
    IF v_version IS NULL THEN
        RAISE EXCEPTION 'no such pipeline: %', p_pipeline USING ERRCODE = 'no_data_found';
    END IF;
    SELECT id INTO run_id FROM runs WHERE pipeline = p_pipeline AND state = 'queued' ORDER BY id LIMIT 1;
    IF FOUND THEN
        coalesced := true;
        RETURN;
    END IF;
    INSERT INTO runs (pipeline, pipeline_version_id, trigger, sketch_watermark)
        VALUES (p_pipeline, v_version, p_trigger,
                coalesce((SELECT max(id) FROM images WHERE domain = 'sketch'), 0))
        RETURNING id INTO run_id;
    coalesced := false;
    PERFORM pg_notify('atelier_runs', json_build_object('run', run_id, 'state', 'queued')::text);
    PERFORM atelier_advance_run(run_id);
END $$;

CREATE FUNCTION atelier_finish_run(p_run bigint, p_state text, p_error text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_pipeline text;
    v_next bigint;
BEGIN
    UPDATE runs SET state = p_state, error = p_error, finished_at = clock_timestamp()
        WHERE id = p_run AND state IN ('queued', 'running') RETURNING pipeline INTO v_pipeline;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- stop whatever else this run still has queued or running
    PERFORM atelier_cancel_job(j.id) FROM jobs j WHERE j.run_id = p_run AND j.state IN ('queued', 'running');
    PERFORM pg_notify('atelier_runs', json_build_object('run', p_run, 'state', p_state)::text);
    -- a slot is free: start the oldest waiting run of this pipeline
    SELECT id INTO v_next FROM runs WHERE pipeline = v_pipeline AND state = 'queued' ORDER BY id LIMIT 1;
    IF FOUND THEN
        PERFORM atelier_advance_run(v_next);
    END IF;
END $$;

CREATE FUNCTION atelier_advance_run(p_run bigint) RETURNS text LANGUAGE plpgsql AS $$
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

    -- A terminal failure or cancellation of any stage ends the run.
    SELECT * INTO v_job FROM jobs WHERE run_id = p_run AND state IN ('failed', 'cancelled') ORDER BY id LIMIT 1;
    IF FOUND THEN
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
                -- test-only kinds run as test.KIND in the worker's handler table
                kind => CASE WHEN v_def->>'kind' IN ('sleep', 'fail', 'crash', 'noop') THEN 'test.' || (v_def->>'kind')
                             ELSE v_def->>'kind' END,
                payload => jsonb_build_object('run', p_run, 'pipeline', r.pipeline, 'model', v_parsed->>'model',
                                              'stage', v_stage, 'params', coalesce(v_def->'params', '{}'),
                                              'gate', coalesce(v_def->'gate', '[]'), 'inputs', v_inputs,
                                              'pipeline_version_id', r.pipeline_version_id),
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

-- Any terminal change of a job that belongs to a run advances that run, in
-- the same transaction.
CREATE FUNCTION atelier_job_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM atelier_advance_run(NEW.run_id);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_advance_run AFTER UPDATE OF state ON jobs
    FOR EACH ROW
    WHEN (NEW.run_id IS NOT NULL AND NEW.state IS DISTINCT FROM OLD.state
          AND NEW.state IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION atelier_job_finished();

CREATE FUNCTION atelier_cancel(p_run bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    SELECT state INTO v_state FROM runs WHERE id = p_run FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_state IN ('queued', 'running') THEN
        UPDATE runs SET cancel_requested = true WHERE id = p_run;
        -- queued jobs are cancelled at once; running ones learn it from their next heartbeat
        PERFORM atelier_finish_run(p_run, 'cancelled', 'cancelled by request');
        RETURN 'cancelled';
    END IF;
    RETURN v_state;
END $$;

-- new_sketches: N accepted training sketches since the pipeline's last run;
-- every: the last run is older than the interval. Pipelines are locked one at
-- a time so two leaders (during a hand-over) cannot both fire.
CREATE FUNCTION atelier_check_triggers() RETURNS integer LANGUAGE plpgsql AS $$
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
        IF v_n > 0 THEN
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

-- The leader's periodic work: expire leases, fire schedules, and advance any
-- run whose advancement was missed (e.g. a crash between commit and notify).
CREATE FUNCTION atelier_tick(OUT reaped integer, OUT triggered integer) LANGUAGE plpgsql AS $$
BEGIN
    reaped := atelier_reap();
    triggered := atelier_check_triggers();
    PERFORM atelier_advance_run(id) FROM runs WHERE state = 'queued' ORDER BY id;
END $$;

-- For dashboards (Grafana-style): one row per run with its stages' progress.
CREATE VIEW run_status AS
SELECT r.id AS run_id, r.pipeline, v.version AS pipeline_version, r.state, r.trigger, r.created_at, r.started_at,
       r.finished_at, extract(epoch FROM coalesce(r.finished_at, now()) - coalesce(r.started_at, r.created_at))
           AS seconds,
       (SELECT count(*) FROM jsonb_object_keys(v.parsed->'stages')) AS stages_total,
       (SELECT count(*) FROM jobs j WHERE j.run_id = r.id AND j.state = 'succeeded') AS stages_succeeded,
       (SELECT string_agg(j.stage, ',' ORDER BY j.id) FROM jobs j WHERE j.run_id = r.id AND j.state = 'running')
           AS running_stages,
       (SELECT avg(coalesce(j.progress, CASE WHEN j.state = 'succeeded' THEN 1 ELSE 0 END)) FROM jobs j
           WHERE j.run_id = r.id) AS progress,
       r.error
FROM runs r JOIN pipeline_versions v ON v.id = r.pipeline_version_id;
