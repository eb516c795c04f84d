-- 002_queue.sql — pipelines, runs, and the PostgreSQL job queue.
--
-- The queue contract lives here, as PL/pgSQL functions (006_queue_hot_path.sql
-- changes the hot path: the claim moves to lib/queue.c, the queue floor), so that atelierd
-- (async libpq on its loop) and atelier-worker (blocking libpq) share one
-- implementation and every queue operation is one round trip:
--
--   atelier_enqueue(kind, payload, ...)            -> job id
--   atelier_claim(worker, kinds, gpus, lease_s)    -> 0 or 1 jobs row (with owner_token)
--   atelier_heartbeat(id, token, progress, msg, eta_s, lease_s) -> 'ok' | 'cancel' | 'stale'
--   atelier_complete(id, token, result)            -> true, or false when the token is stale
--   atelier_complete_claim(id, token, result, worker, kinds, gpus, lease_s)
--                                                  -> (completed, next job's columns or NULLs)
--   atelier_fail(id, token, error, retryable)      -> new state, or NULL when the token is stale
--   atelier_release(id, token)                     -> true/false (give a job back, attempt not counted)
--   atelier_reap()                                 -> number of jobs reaped
--   atelier_cancel_job(id)                         -> resulting state, NULL if no such job
--   atelier_cancel_run(run_id)                     -> number of jobs touched
--   atelier_metrics(id, token, step, names, values) -> false when stale
--   atelier_worker_seen(name, kinds, gpus)         -> void
--
-- Invariants:
--   * owner_token is new on every claim (a sequence) and NULL whenever the job
--     is not running (a CHECK says so). Every call a worker makes about a job
--     names (id, owner_token) and only touches the row while the token
--     matches, so a worker whose lease expired and whose job was re-claimed
--     or finished can never overwrite the newer attempt.
--   * attempts counts claims (a release on worker shutdown gives one back).
--   * A job's result and its state change are one UPDATE.
--   * Terminal states (succeeded, failed, cancelled) never change again.
--   * Lower priority runs first; ties in id (FIFO) order.
--
-- Notifications: 'atelier_jobs' (payload: kind) when jobs become claimable
-- now (insert, release); 'atelier_runs' (payload: {"run":..,"job":..,"state":..})
-- whenever a job that belongs to a run changes state after being claimed.
-- Jobs without a run (tests, benchmarks) send no 'atelier_runs' notification:
-- NOTIFY serialises committers on one lock, so the hot path stays clear of it.

-- ---- pipelines and runs ----

CREATE TABLE pipelines (
    name                text PRIMARY KEY CHECK (name <> ''),
    current_version_id  bigint,   -- pipeline_versions.id; FK added below
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Immutable: applying the same YAML again (same sha256) finds the old row.
CREATE TABLE pipeline_versions (
    id          bigserial PRIMARY KEY,
    pipeline    text NOT NULL REFERENCES pipelines (name) ON DELETE CASCADE,
    version     integer NOT NULL CHECK (version > 0),
    yaml        text NOT NULL,
    parsed      jsonb NOT NULL,
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pipeline, version),
    UNIQUE (pipeline, sha256)
);

ALTER TABLE pipelines ADD CONSTRAINT pipelines_current_version_fk
    FOREIGN KEY (current_version_id) REFERENCES pipeline_versions (id) DEFERRABLE INITIALLY DEFERRED;

CREATE FUNCTION atelier_pipeline_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pipeline_versions rows are immutable' USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER pipeline_versions_immutable BEFORE UPDATE ON pipeline_versions
    FOR EACH ROW EXECUTE FUNCTION atelier_pipeline_versions_immutable();

CREATE TABLE runs (
    id                   bigserial PRIMARY KEY,
    pipeline             text NOT NULL REFERENCES pipelines (name) ON DELETE CASCADE,
    pipeline_version_id  bigint NOT NULL REFERENCES pipeline_versions (id),
    state                text NOT NULL DEFAULT 'queued'
                         CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    trigger              text NOT NULL DEFAULT 'manual',
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    finished_at          timestamptz,
    error                text
);
CREATE INDEX runs_pipeline_id ON runs (pipeline, id DESC);
CREATE INDEX runs_active ON runs (id) WHERE state IN ('queued', 'running');

-- ---- the job queue ----

CREATE SEQUENCE jobs_owner_token_seq CACHE 64;

CREATE TABLE jobs (
    id                bigserial PRIMARY KEY,
    run_id            bigint REFERENCES runs (id) ON DELETE CASCADE,  -- NULL: a job outside any run (tests, benches)
    stage             text,
    kind              text NOT NULL,                         -- [a-z0-9][a-z0-9._-]*, checked by atelier_enqueue
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority          integer NOT NULL DEFAULT 0,            -- lower runs first
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL DEFAULT 3,            -- >= 1, checked by atelier_enqueue
    backoff_s         real NOT NULL DEFAULT 1,  -- retry delay base: backoff_s * 2^(attempts-1), jittered
    run_after         timestamptz NOT NULL DEFAULT now(),
    lease_expires_at  timestamptz,
    timeout_s         integer,         -- per attempt, from started_at; NULL = none
    worker            text,                                  -- the worker of the latest attempt
    owner_token       bigint,                                -- new on every claim; NULL unless running
    needs_gpu         integer NOT NULL DEFAULT 0,
    cancel_requested  boolean NOT NULL DEFAULT false,
    progress          real,                                  -- 0..1, clamped by atelier_heartbeat
    progress_msg      text,
    eta_seconds       integer,
    payload           jsonb NOT NULL DEFAULT '{}',
    result            jsonb,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,                           -- start of the latest attempt
    finished_at       timestamptz,
    -- Lookups by (id, owner_token) need no state test (which could lure the
    -- planner onto the partial index of running rows instead of the primary key).
    CONSTRAINT jobs_token_iff_running CHECK ((state = 'running') = (owner_token IS NOT NULL))
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.05,
        autovacuum_vacuum_cost_delay = 0);

-- Claimable rows only: claimed and finished rows leave this index, so the claim
-- scan stays short however long the history grows.
CREATE INDEX jobs_claimable ON jobs (priority, id) WHERE state = 'queued';
-- The reaper's scan: running rows only.
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_run ON jobs (run_id, id) WHERE run_id IS NOT NULL;

-- Per-step metrics a job streams (losses, scores).
CREATE TABLE metrics (
    job_id  bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step    bigint NOT NULL,
    name    text NOT NULL,
    value   double precision NOT NULL,
    ts      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX metrics_job_name_step ON metrics (job_id, name, step);

CREATE TABLE workers (
    name        text PRIMARY KEY,
    kinds       text[] NOT NULL,
    gpus        integer NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

-- ---- notifications ----

-- Statement-level, so a bulk INSERT sends one notification per kind.
CREATE FUNCTION atelier_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k text;
BEGIN
    FOR k IN SELECT DISTINCT kind FROM new_jobs WHERE state = 'queued' LOOP
        PERFORM pg_notify('atelier_jobs', k);
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION atelier_jobs_notify();

CREATE FUNCTION atelier_notify_run(p_run bigint, p_job bigint, p_state text) RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('atelier_runs', json_build_object('run', p_run, 'job', p_job, 'state', p_state)::text)
    WHERE p_run IS NOT NULL
$$;

-- ---- the contract ----

-- started_at and finished_at use clock_timestamp(), not now(): now() is the
-- transaction's start, and a job claimed in the transaction that completed
-- its predecessor (or that waited on a run lock) would otherwise appear to
-- start before that predecessor finished.

-- Retry delay before attempt n+1 after n attempts: base * 2^(n-1), capped at
-- an hour, with "equal jitter" (half fixed, half random) so that jobs failed
-- together do not retry together.
CREATE FUNCTION atelier_backoff(p_attempts integer, p_base_s real) RETURNS interval
LANGUAGE sql VOLATILE AS $$
    SELECT make_interval(secs => d / 2 + random() * d / 2)
    FROM (SELECT least(3600.0, p_base_s * power(2.0, least(greatest(p_attempts - 1, 0), 30))) AS d) s
$$;

-- Every job row is written through these functions, so the checks on values
-- that never change after enqueue live here rather than as CHECK constraints:
-- PostgreSQL re-evaluates every CHECK on every UPDATE, and a job is updated
-- at least twice (claim, complete) on the hot path.
CREATE FUNCTION atelier_enqueue(
    kind          text,
    payload       jsonb DEFAULT '{}',
    priority      integer DEFAULT 0,
    run_id        bigint DEFAULT NULL,
    stage         text DEFAULT NULL,
    max_attempts  integer DEFAULT 3,
    timeout_s     integer DEFAULT NULL,
    needs_gpu     integer DEFAULT 0,
    run_after     timestamptz DEFAULT NULL,
    backoff_s     real DEFAULT 1
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    IF $1 IS NULL OR $1 !~ '^[a-z0-9][a-z0-9._-]*$' THEN
        RAISE EXCEPTION 'invalid job kind "%"', $1 USING ERRCODE = 'check_violation';
    END IF;
    IF coalesce($6, 3) < 1 OR $7 <= 0 OR coalesce($8, 0) < 0 OR coalesce($10, 1) < 0 THEN
        RAISE EXCEPTION 'invalid job limits (max_attempts %, timeout_s %, needs_gpu %, backoff_s %)', $6, $7, $8, $10
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO jobs (kind, payload, priority, run_id, stage, max_attempts, timeout_s, needs_gpu, run_after, backoff_s)
    VALUES ($1, coalesce($2, '{}'), coalesce($3, 0), $4, $5, coalesce($6, 3), $7, coalesce($8, 0),
            coalesce($9, now()), coalesce($10, 1))
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- Claim the first claimable job (priority, id) among kinds for a worker with
-- gpus GPUs. SKIP LOCKED lets concurrent claimers pass over each other's rows
-- instead of queueing behind them. A job that needs a GPU is never given to a
-- worker without enough.
CREATE FUNCTION atelier_claim(p_worker text, p_kinds text[], p_gpus integer, p_lease_s integer)
RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    c jobs;
BEGIN
    UPDATE jobs j
       SET state = 'running', attempts = j.attempts + 1, owner_token = nextval('jobs_owner_token_seq'),
           lease_expires_at = now() + make_interval(secs => p_lease_s), worker = p_worker,
           started_at = clock_timestamp(), finished_at = NULL, progress = 0, progress_msg = NULL, eta_seconds = NULL
     WHERE j.id = (SELECT q.id FROM jobs q
                    WHERE q.state = 'queued' AND q.kind = ANY (p_kinds) AND q.run_after <= now()
                      AND q.needs_gpu <= p_gpus
                    ORDER BY q.priority, q.id
                    LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING j.* INTO c;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF c.run_id IS NOT NULL THEN
        PERFORM atelier_notify_run(c.run_id, c.id, 'running');
    END IF;
    RETURN NEXT c;
END $$;

-- Extend the lease and record progress (NULL arguments keep the old values).
-- 'stale' when the token no longer owns a running job: the worker must stop.
CREATE FUNCTION atelier_heartbeat(p_id bigint, p_token bigint, p_progress real, p_msg text,
                                  p_eta_s integer, p_lease_s integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c boolean;
BEGIN
    UPDATE jobs
       SET lease_expires_at = now() + make_interval(secs => p_lease_s),
           progress = coalesce(least(greatest(p_progress, 0), 1), progress),
           progress_msg = coalesce(p_msg, progress_msg),
           eta_seconds = coalesce(p_eta_s, eta_seconds)
     WHERE id = p_id AND owner_token = p_token
    RETURNING cancel_requested INTO c;
    IF NOT FOUND THEN
        RETURN 'stale';
    END IF;
    RETURN CASE WHEN c THEN 'cancel' ELSE 'ok' END;
END $$;

CREATE FUNCTION atelier_complete(p_id bigint, p_token bigint, p_result jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
BEGIN
    UPDATE jobs
       SET state = 'succeeded', result = coalesce(p_result, '{}'), error = NULL, progress = 1,
           eta_seconds = 0, finished_at = clock_timestamp(), lease_expires_at = NULL, owner_token = NULL
     WHERE id = p_id AND owner_token = p_token
    RETURNING run_id INTO r;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF r IS NOT NULL THEN
        PERFORM atelier_notify_run(r, p_id, 'succeeded');
    END IF;
    RETURN true;
END $$;

-- The worker's hot path: complete one job and claim the next in one round
-- trip and one transaction (half the commits of complete + claim). Always
-- one row: completed says whether the token still owned the finished job;
-- the job columns are NULL when nothing is claimable.
CREATE FUNCTION atelier_complete_claim(p_id bigint, p_token bigint, p_result jsonb, p_worker text,
                                       p_kinds text[], p_gpus integer, p_lease_s integer)
RETURNS TABLE (completed boolean, id bigint, owner_token bigint, run_id bigint, attempts integer,
               max_attempts integer, needs_gpu integer, timeout_s integer, kind text, stage text,
               payload jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
    c jobs;
BEGIN
    -- atelier_complete then atelier_claim, inlined: nested PL/pgSQL calls (and
    -- the set-returning claim) cost measurably at thousands of jobs a second.
    -- Keep the two statements identical to those functions.
    UPDATE jobs j
       SET state = 'succeeded', result = coalesce(p_result, '{}'), error = NULL, progress = 1,
           eta_seconds = 0, finished_at = clock_timestamp(), lease_expires_at = NULL, owner_token = NULL
     WHERE j.id = p_id AND j.owner_token = p_token
    RETURNING j.run_id INTO r;
    completed := FOUND;
    IF completed AND r IS NOT NULL THEN
        PERFORM atelier_notify_run(r, p_id, 'succeeded');
    END IF;
    UPDATE jobs j
       SET state = 'running', attempts = j.attempts + 1, owner_token = nextval('jobs_owner_token_seq'),
           lease_expires_at = now() + make_interval(secs => p_lease_s), worker = p_worker,
           started_at = clock_timestamp(), finished_at = NULL, progress = 0, progress_msg = NULL, eta_seconds = NULL
     WHERE j.id = (SELECT q.id FROM jobs q
                    WHERE q.state = 'queued' AND q.kind = ANY (p_kinds) AND q.run_after <= now()
                      AND q.needs_gpu <= p_gpus
                    ORDER BY q.priority, q.id
                    LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING j.* INTO c;
    IF FOUND AND c.run_id IS NOT NULL THEN
        PERFORM atelier_notify_run(c.run_id, c.id, 'running');
    END IF;
    id := c.id; owner_token := c.owner_token; run_id := c.run_id;
    attempts := c.attempts; max_attempts := c.max_attempts; needs_gpu := c.needs_gpu;
    timeout_s := c.timeout_s; kind := c.kind; stage := c.stage; payload := c.payload;
    RETURN NEXT;
END $$;

-- A failed attempt: re-queued with backoff while attempts remain and the
-- failure is retryable, else failed; a job whose cancel was requested ends
-- cancelled whatever the reason.
CREATE FUNCTION atelier_fail(p_id bigint, p_token bigint, p_error text, p_retryable boolean)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
    s text;
BEGIN
    UPDATE jobs
       SET state = CASE WHEN cancel_requested THEN 'cancelled'
                        WHEN p_retryable AND attempts < max_attempts THEN 'queued'
                        ELSE 'failed' END,
           run_after = CASE WHEN NOT cancel_requested AND p_retryable AND attempts < max_attempts
                            THEN now() + atelier_backoff(attempts, backoff_s) ELSE run_after END,
           finished_at = CASE WHEN NOT cancel_requested AND p_retryable AND attempts < max_attempts
                              THEN NULL ELSE now() END,
           error = p_error, lease_expires_at = NULL, owner_token = NULL
     WHERE id = p_id AND owner_token = p_token
    RETURNING run_id, state INTO r, s;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF r IS NOT NULL THEN
        PERFORM atelier_notify_run(r, p_id, s);
    END IF;
    RETURN s;
END $$;

-- Give a job back without counting the attempt (a worker shutting down).
CREATE FUNCTION atelier_release(p_id bigint, p_token bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
    k text;
    s text;
BEGIN
    UPDATE jobs
       SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
           attempts = greatest(attempts - 1, 0), run_after = now(), lease_expires_at = NULL,
           finished_at = CASE WHEN cancel_requested THEN now() END,
           error = 'released by worker ' || coalesce(worker, '?') || ' on shutdown', owner_token = NULL
     WHERE id = p_id AND owner_token = p_token
    RETURNING run_id, kind, state INTO r, k, s;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF s = 'queued' THEN
        PERFORM pg_notify('atelier_jobs', k);
    END IF;
    IF r IS NOT NULL THEN
        PERFORM atelier_notify_run(r, p_id, s);
    END IF;
    RETURN true;
END $$;

-- Per-attempt timeouts end the job (failed; cancelled if a cancel was
-- requested): a stage that ran out of time once is not retried. Expired
-- leases (the worker died or lost the database) re-queue the job with backoff
-- while attempts remain, else fail it. Safe to run concurrently from any
-- number of processes (SKIP LOCKED); atelierd runs it on a timer and idle
-- workers run it on their poll tick.
CREATE FUNCTION atelier_reap() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    x record;
BEGIN
    FOR x IN
        UPDATE jobs j
           SET state = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'failed' END,
               error = format('timed out after %s s (attempt %s, worker %s)', j.timeout_s, j.attempts, j.worker),
               finished_at = clock_timestamp(), lease_expires_at = NULL, owner_token = NULL
          FROM (SELECT id FROM jobs
                 WHERE state = 'running' AND timeout_s IS NOT NULL
                   AND started_at + make_interval(secs => timeout_s) <= now()
                 FOR UPDATE SKIP LOCKED) t
         WHERE j.id = t.id
        RETURNING j.id, j.run_id, j.state
    LOOP
        n := n + 1;
        PERFORM atelier_notify_run(x.run_id, x.id, x.state);
    END LOOP;

    FOR x IN
        UPDATE jobs j
           SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                            WHEN j.attempts >= j.max_attempts THEN 'failed'
                            ELSE 'queued' END,
               run_after = CASE WHEN NOT j.cancel_requested AND j.attempts < j.max_attempts
                                THEN now() + atelier_backoff(j.attempts, j.backoff_s) ELSE j.run_after END,
               finished_at = CASE WHEN NOT j.cancel_requested AND j.attempts < j.max_attempts
                                  THEN NULL ELSE now() END,
               error = format('lease expired: worker %s stopped heartbeating (attempt %s of %s)',
                              j.worker, j.attempts, j.max_attempts),
               lease_expires_at = NULL, owner_token = NULL
          FROM (SELECT id FROM jobs
                 WHERE state = 'running' AND lease_expires_at < now()
                 FOR UPDATE SKIP LOCKED) e
         WHERE j.id = e.id
        RETURNING j.id, j.run_id, j.state
    LOOP
        n := n + 1;
        PERFORM atelier_notify_run(x.run_id, x.id, x.state);
    END LOOP;
    RETURN n;
END $$;

-- A queued job is cancelled at once; a running one gets cancel_requested,
-- which its worker learns from the next heartbeat. Terminal jobs are left as
-- they are. Returns the job's state afterwards (NULL: no such job).
CREATE FUNCTION atelier_cancel_job(p_id bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
    s text;
BEGIN
    UPDATE jobs
       SET cancel_requested = true,
           state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
           finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END
     WHERE id = p_id AND state IN ('queued', 'running')
    RETURNING run_id, state INTO r, s;
    IF NOT FOUND THEN
        SELECT state INTO s FROM jobs WHERE id = p_id;
        RETURN s;
    END IF;
    IF s = 'cancelled' THEN
        PERFORM atelier_notify_run(r, p_id, s);
    END IF;
    RETURN s;
END $$;

CREATE FUNCTION atelier_cancel_run(p_run bigint) RETURNS integer LANGUAGE sql AS $$
    SELECT count(atelier_cancel_job(id))::integer FROM jobs
     WHERE run_id = p_run AND state IN ('queued', 'running')
$$;

-- Append metrics for a running job; false when the token is stale.
CREATE FUNCTION atelier_metrics(p_id bigint, p_token bigint, p_step bigint, p_names text[],
                                p_values double precision[])
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM jobs WHERE id = p_id AND owner_token = p_token;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO metrics (job_id, step, name, value)
        SELECT p_id, p_step, n, v FROM unnest(p_names, p_values) AS u (n, v);
    RETURN true;
END $$;

CREATE FUNCTION atelier_worker_seen(p_name text, p_kinds text[], p_gpus integer)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO workers (name, kinds, gpus) VALUES (p_name, p_kinds, p_gpus)
    ON CONFLICT (name) DO UPDATE SET kinds = excluded.kinds, gpus = excluded.gpus, last_seen = now()
$$;
