-- 016_gang.sql — gang claims: a data-parallel train job runs as `gang_size`
-- ranks on as many workers, none of which starts until all are claimed.
-- docs/queue.md ("Gang claims") is the contract; docs/training.md the user's view.
--
-- The job row stays the unit of retry: the worker that claims it the usual
-- way (atelier_claim) is rank 0. It hosts the rendezvous store, then opens a
-- gang with the store's host:port (atelier_gang_open). Idle workers join open
-- gangs before they claim new work (atelier_gang_join), so a gang fills from
-- the workers that free up first. Every rank polls (atelier_gang_poll), which
-- extends its own lease and answers the gang's state:
--   filling  -> formed    when the last rank joins (in that join)
--   filling  -> released  when fill_deadline passes first: the job goes back
--                         to the queue without counting an attempt, after a
--                         random 0..fill_s delay, so two gangs that each hold
--                         half the workers do not meet again in lock step
--   *        -> failed    when a rank's lease expires (a dead worker) or the
--                         job leaves 'running' other than by succeeding
--                         (failed, reaped, released, cancelled)
--   formed   -> done      when the job succeeds.
-- A retried job opens a new gang (its new owner token); the old one's ranks
-- see 'failed' or a token that no longer matches and stop.
--
--   atelier_gang_open(id, token, rendezvous, fill_s, lease_s)  -> false when (id, token) is not running
--   atelier_gang_join(worker, kinds, gpus, lease_s)    -> 0 or 1 row: the job's claim columns (id,
--        owner_token = this rank's member token, run_id .. payload) then gang_token, rank, size, rendezvous
--   atelier_gang_poll(id, gang_token, rank, member_token, lease_s) -> state text ('gone' when replaced)

ALTER TABLE jobs ADD COLUMN gang_size integer NOT NULL DEFAULT 1 CHECK (gang_size BETWEEN 1 AND 64);

CREATE TABLE gangs (
    job_id        bigint PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    token         bigint NOT NULL,            -- rank 0's owner token of the job (this attempt)
    size          integer NOT NULL CHECK (size BETWEEN 2 AND 64),
    state         text NOT NULL DEFAULT 'filling'
                  CHECK (state IN ('filling', 'formed', 'released', 'failed', 'done')),
    rendezvous    text NOT NULL CHECK (length(rendezvous) BETWEEN 3 AND 300),  -- host:port of rank 0's store
    fill_s        integer NOT NULL CHECK (fill_s BETWEEN 1 AND 3600),
    fill_deadline timestamptz NOT NULL,
    error         text,
    created       timestamptz NOT NULL DEFAULT now(),
    formed_at     timestamptz
);
-- Joiners look only at filling gangs.
CREATE INDEX gangs_filling ON gangs (created) WHERE state = 'filling';

CREATE TABLE gang_ranks (
    job_id           bigint NOT NULL REFERENCES gangs (job_id) ON DELETE CASCADE,
    rank             integer NOT NULL CHECK (rank >= 0),
    worker           text NOT NULL,
    member_token     bigint NOT NULL,
    lease_expires_at timestamptz NOT NULL,
    joined_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, rank)
);

-- Train jobs of a run take their gang size from the pipeline version's stage
-- (resources.workers, present only when > 1); jobs enqueued by hand may say
-- payload.workers. One lookup per inserted train job, nothing for the others.
CREATE FUNCTION atelier_jobs_gang_size() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF NEW.stage IS NOT NULL AND NEW.payload ? 'pipeline_version_id' THEN
        SELECT (v.parsed -> 'stages' -> NEW.stage -> 'resources' ->> 'workers')::int INTO n
          FROM pipeline_versions v WHERE v.id = (NEW.payload ->> 'pipeline_version_id')::bigint;
    END IF;
    IF n IS NULL AND jsonb_typeof(NEW.payload -> 'workers') = 'number' THEN
        n := (NEW.payload ->> 'workers')::int;
    END IF;
    NEW.gang_size := coalesce(n, 1);
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_gang_size BEFORE INSERT ON jobs FOR EACH ROW WHEN (NEW.kind = 'train')
    EXECUTE FUNCTION atelier_jobs_gang_size();

-- The job left 'running': its gang is over (done when it succeeded).
CREATE FUNCTION atelier_jobs_gang_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE gangs
       SET state = CASE WHEN NEW.state = 'succeeded' THEN 'done'
                        WHEN state = 'filling' AND fill_deadline <= now() THEN 'released'
                        ELSE 'failed' END,
           error = coalesce(error, 'job ' || NEW.id || ' became ' || NEW.state)
     WHERE job_id = NEW.id AND token = OLD.owner_token AND state IN ('filling', 'formed');
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_gang_end AFTER UPDATE OF state ON jobs FOR EACH ROW
    WHEN (OLD.state = 'running' AND NEW.state <> 'running' AND NEW.gang_size > 1)
    EXECUTE FUNCTION atelier_jobs_gang_end();

CREATE FUNCTION atelier_gang_open(p_id bigint, p_token bigint, p_rendezvous text, p_fill_s integer,
                                  p_lease_s integer)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    j jobs%ROWTYPE;
BEGIN
    SELECT * INTO j FROM jobs WHERE id = p_id AND owner_token = p_token AND state = 'running' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF j.gang_size < 2 THEN
        RAISE EXCEPTION 'job % is not a gang (gang_size %)', p_id, j.gang_size USING ERRCODE = '22023';
    END IF;
    -- An earlier attempt's gang (and its ranks) is replaced.
    DELETE FROM gangs WHERE job_id = p_id;
    INSERT INTO gangs (job_id, token, size, rendezvous, fill_s, fill_deadline)
    VALUES (p_id, p_token, j.gang_size, p_rendezvous, p_fill_s, now() + make_interval(secs => p_fill_s));
    INSERT INTO gang_ranks (job_id, rank, worker, member_token, lease_expires_at)
    VALUES (p_id, 0, coalesce(j.worker, '?'), p_token, now() + make_interval(secs => p_lease_s));
    -- Wake idle workers of this kind: they join before they claim.
    PERFORM pg_notify('atelier_jobs', j.kind);
    RETURN true;
END $$;

CREATE FUNCTION atelier_gang_join(p_worker text, p_kinds text[], p_gpus integer, p_lease_s integer)
RETURNS TABLE (id bigint, owner_token bigint, run_id bigint, attempts integer, max_attempts integer,
               needs_gpu integer, timeout_s integer, kind text, stage text, payload jsonb,
               gang_token bigint, rank integer, size integer, rendezvous text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    g gangs%ROWTYPE;
    j jobs%ROWTYPE;
    n integer;
    t bigint;
BEGIN
    -- SKIP LOCKED: two joiners of one gang serialise on its row, others pass.
    SELECT gg.* INTO g FROM gangs gg JOIN jobs jj ON jj.id = gg.job_id
     WHERE gg.state = 'filling' AND gg.fill_deadline > now()
       AND jj.state = 'running' AND jj.owner_token = gg.token
       AND jj.kind = ANY (p_kinds) AND jj.needs_gpu <= p_gpus
       AND NOT EXISTS (SELECT 1 FROM gang_ranks r WHERE r.job_id = gg.job_id AND r.worker = p_worker)
     ORDER BY gg.created
     LIMIT 1 FOR UPDATE OF gg SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO j FROM jobs jj WHERE jj.id = g.job_id;
    SELECT count(*) INTO n FROM gang_ranks gr WHERE gr.job_id = g.job_id;
    t := nextval('jobs_owner_token_seq');
    INSERT INTO gang_ranks AS gr (job_id, rank, worker, member_token, lease_expires_at)
    VALUES (g.job_id, n, p_worker, t, now() + make_interval(secs => p_lease_s));
    IF n + 1 = g.size THEN
        UPDATE gangs SET state = 'formed', formed_at = now() WHERE gangs.job_id = g.job_id;
    END IF;
    id := j.id; owner_token := t; run_id := j.run_id; attempts := j.attempts; max_attempts := j.max_attempts;
    needs_gpu := j.needs_gpu; timeout_s := j.timeout_s; kind := j.kind; stage := j.stage; payload := j.payload;
    gang_token := g.token; rank := n; size := g.size; rendezvous := g.rendezvous;
    RETURN NEXT;
END $$;

CREATE FUNCTION atelier_gang_poll(p_id bigint, p_gang_token bigint, p_rank integer, p_member_token bigint,
                                  p_lease_s integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    g gangs%ROWTYPE;
    v_dead integer;
BEGIN
    SELECT * INTO g FROM gangs WHERE job_id = p_id AND token = p_gang_token FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    UPDATE gang_ranks SET lease_expires_at = now() + make_interval(secs => p_lease_s)
     WHERE job_id = p_id AND rank = p_rank AND member_token = p_member_token;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    IF g.state = 'filling' AND g.fill_deadline <= now() THEN
        -- Not filled in time: give everything back. The job is released
        -- (the attempt does not count) and waits a random part of fill_s.
        UPDATE gangs SET state = 'released', error = 'not filled within ' || g.fill_s || ' s'
         WHERE job_id = p_id;
        IF atelier_release(p_id, g.token) THEN
            UPDATE jobs SET run_after = now() + make_interval(secs => random() * g.fill_s),
                            error = 'gang of ' || g.size || ' not filled within ' || g.fill_s || ' s'
             WHERE id = p_id AND state = 'queued';
        END IF;
        RETURN 'released';
    END IF;
    IF g.state IN ('filling', 'formed') THEN
        SELECT min(r.rank) INTO v_dead FROM gang_ranks r
         WHERE r.job_id = p_id AND r.lease_expires_at < now();
        IF v_dead IS NOT NULL THEN
            UPDATE gangs SET state = 'failed', error = 'rank ' || v_dead || ' stopped polling (lease expired)'
             WHERE job_id = p_id;
            RETURN 'failed';
        END IF;
    END IF;
    RETURN g.state;
END $$;
