-- 006_queue_hot_path.sql — take per-statement overhead off the queue's hot
-- path (claim, complete): measured in docs/queue.md ("Throughput").
--
-- Every UPDATE of a jobs row paid, per statement, for re-reading and
-- compiling the table's CHECK constraints and the WHEN clause of the
-- jobs_advance_run trigger (stringToNode + ExecInitExpr on every execution),
-- and the claim paid for a PL/pgSQL call around one UPDATE. Together that
-- was about a third of PostgreSQL's time per job at 4 workers.
--
--   * jobs_state_check and jobs_token_iff_running go. Every state value is a
--     literal in the queue's own statements (002, 003 and lib/queue.c), which
--     are the only writers; tests/unit/test_queue.c checks both invariants
--     after thousands of concurrent claims instead.
--   * The trigger goes: atelier_notify_run, which every function already
--     calls after changing the state of a job that belongs to a run, now also
--     advances the run when the new state is terminal — in the same
--     transaction, as the trigger did.
--   * atelier_claim and atelier_complete_claim go: the claim is one prepared
--     UPDATE in lib/queue.c, and a worker completes and claims in one round
--     trip by pipelining atelier_complete and that UPDATE into one implicit
--     transaction. There is one claim statement, in one place.

ALTER TABLE jobs DROP CONSTRAINT jobs_token_iff_running, DROP CONSTRAINT jobs_state_check;

DROP TRIGGER jobs_advance_run ON jobs;
DROP FUNCTION atelier_job_finished();
DROP FUNCTION atelier_complete_claim(bigint, bigint, jsonb, text, text[], integer, integer);
DROP FUNCTION atelier_claim(text, text[], integer, integer);

-- Called after every state change of a job that belongs to a run (no-op for
-- jobs outside runs): tell listeners, and when the job reached a terminal
-- state, advance its run (enqueue the stages now ready, or finish the run).
CREATE OR REPLACE FUNCTION atelier_notify_run(p_run bigint, p_job bigint, p_state text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_run IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_notify('atelier_runs', json_build_object('run', p_run, 'job', p_job, 'state', p_state)::text);
    IF p_state IN ('succeeded', 'failed', 'cancelled') THEN
        PERFORM atelier_advance_run(p_run);
    END IF;
END $$;

-- ---- the queue floor ----
--
-- Claims take the head of jobs_claimable, and every claim leaves a dead
-- index entry there (the row's 'queued' version) that only VACUUM removes.
-- Each claim walked all of them from the start of the index: at 4 workers a
-- fifth of PostgreSQL's time after 40,000 claims, and throughput halved over
-- 40 s of steady load between autovacuums.
--
-- queue_floor holds a key (priority, id) at or below that of every queued
-- job, and the claim's index scan starts there instead of at the start of
-- the index. Invariant: no queued job has (priority, id) < the floor.
--
--   * Anything that makes a job queued (INSERT, a retry, a reap, a release)
--     lowers the floor to that job's key in the same transaction, under a
--     shared advisory lock (lowerers never wait on each other unless two
--     lower at once, which is rare: new jobs land above the floor).
--   * atelier_queue_floor_raise() raises it to the first queued key, under
--     the same advisory lock taken exclusively and only if free (it never
--     waits): while it holds the lock no lowerer is in flight, so the first
--     queued key it reads (with a snapshot taken after the lock) is final.
--     A lowerer that committed before sees its job in that read; one that
--     comes after lowers the raised floor again.
--   * Workers raise it on every 16th completion (in the same pipeline as
--     complete + claim; lib/queue.c). The leader's tick checks it against the
--     whole index and corrects it either way, so even a job made queued by a
--     hand-written UPDATE is found within a tick.
--
-- Advisory lock keys: 7316001 migrations (lib/db.c), 7316002 the leader
-- (orchestrator/scheduler.c), 7316003 the queue floor.
--
-- All queue functions run in READ COMMITTED (each statement's snapshot is
-- taken after the locks of the statements before it).

CREATE TABLE queue_floor (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    priority  integer NOT NULL,
    id        bigint NOT NULL
) WITH (fillfactor = 10);
INSERT INTO queue_floor (priority, id)
    SELECT coalesce(min(priority), -2147483648), 0 FROM jobs WHERE state = 'queued';

CREATE FUNCTION atelier_queue_floor_lower(p_priority integer, p_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7316003);
    UPDATE queue_floor SET priority = p_priority, id = p_id WHERE (priority, id) > (p_priority, p_id);
END $$;

-- Move the floor up to the first queued key. With p_full (the leader's tick)
-- the search starts at the start of the index instead of at the floor, and
-- the floor moves down as well when a queued job lies below it — a job made
-- queued by hand, without atelier_queue_floor_lower, waits at most one tick.
-- Returns false when the lock was busy (nothing done).
CREATE FUNCTION atelier_queue_floor_raise(p_full boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_priority integer;
    v_id bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7316003) THEN
        RETURN false;
    END IF;
    IF p_full THEN
        SELECT q.priority, q.id INTO v_priority, v_id FROM jobs q
         WHERE q.state = 'queued' ORDER BY q.priority, q.id LIMIT 1;
    ELSE
        -- (a sub-select, not a join: the floor must be the index scan's start key)
        SELECT q.priority, q.id INTO v_priority, v_id FROM jobs q
         WHERE q.state = 'queued' AND (q.priority, q.id) >= (SELECT f.priority, f.id FROM queue_floor f)
         ORDER BY q.priority, q.id LIMIT 1;
    END IF;
    IF FOUND THEN
        UPDATE queue_floor SET priority = v_priority, id = v_id
         WHERE (priority, id) < (v_priority, v_id) OR (p_full AND (priority, id) > (v_priority, v_id));
    END IF;
    RETURN true;
END $$;

-- New jobs: one notification per kind (as before) and one floor check per statement.
CREATE OR REPLACE FUNCTION atelier_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k text;
    v_priority integer;
    v_id bigint;
BEGIN
    SELECT priority, id INTO v_priority, v_id FROM new_jobs WHERE state = 'queued' ORDER BY priority, id LIMIT 1;
    IF FOUND THEN
        PERFORM atelier_queue_floor_lower(v_priority, v_id);
    END IF;
    FOR k IN SELECT DISTINCT kind FROM new_jobs WHERE state = 'queued' LOOP
        PERFORM pg_notify('atelier_jobs', k);
    END LOOP;
    RETURN NULL;
END $$;

-- Retries, reaped leases and releases make a job queued again: lower the
-- floor to it. (As in 002 otherwise.)
CREATE OR REPLACE FUNCTION atelier_fail(p_id bigint, p_token bigint, p_error text, p_retryable boolean)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
    s text;
    pr integer;
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
    RETURNING run_id, state, priority INTO r, s, pr;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF s = 'queued' THEN
        PERFORM atelier_queue_floor_lower(pr, p_id);
    END IF;
    IF r IS NOT NULL THEN
        PERFORM atelier_notify_run(r, p_id, s);
    END IF;
    RETURN s;
END $$;

CREATE OR REPLACE FUNCTION atelier_release(p_id bigint, p_token bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
    k text;
    s text;
    pr integer;
BEGIN
    UPDATE jobs
       SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
           attempts = greatest(attempts - 1, 0), run_after = now(), lease_expires_at = NULL,
           finished_at = CASE WHEN cancel_requested THEN now() END,
           error = 'released by worker ' || coalesce(worker, '?') || ' on shutdown', owner_token = NULL
     WHERE id = p_id AND owner_token = p_token
    RETURNING run_id, kind, state, priority INTO r, k, s, pr;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF s = 'queued' THEN
        PERFORM atelier_queue_floor_lower(pr, p_id);
        PERFORM pg_notify('atelier_jobs', k);
    END IF;
    IF r IS NOT NULL THEN
        PERFORM atelier_notify_run(r, p_id, s);
    END IF;
    RETURN true;
END $$;

CREATE OR REPLACE FUNCTION atelier_reap() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    x record;
    v_priority integer;  -- the lowest key re-queued
    v_id bigint;
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
        RETURNING j.id, j.run_id, j.state, j.priority
    LOOP
        n := n + 1;
        IF x.state = 'queued' AND (v_priority IS NULL OR (x.priority, x.id) < (v_priority, v_id)) THEN
            v_priority := x.priority;
            v_id := x.id;
        END IF;
        PERFORM atelier_notify_run(x.run_id, x.id, x.state);
    END LOOP;
    -- Lowered once, after the runs were advanced: every path takes a run's
    -- row before the floor's (a hand-off enqueues, and so lowers, from inside
    -- atelier_advance_run), so two of them cannot wait on each other.
    IF v_priority IS NOT NULL THEN
        PERFORM atelier_queue_floor_lower(v_priority, v_id);
    END IF;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION atelier_tick(OUT reaped integer, OUT triggered integer) LANGUAGE plpgsql AS $$
BEGIN
    reaped := atelier_reap();
    triggered := atelier_check_triggers();
    PERFORM atelier_advance_run(id) FROM runs WHERE state = 'queued' ORDER BY id;
    PERFORM atelier_queue_floor_raise(true);
END $$;
