-- 011_webhooks.sql — alert events for webhooks, their delivery log, and the
-- numbers /metrics reports from the database.
--
-- The events operators are alerted on happen in several processes (a worker
-- fails a run's job, evaluates a gate, promotes or rolls back; atelierd
-- promotes from the API), so they are written here, by triggers in the same
-- transaction as the change, into one outbox: webhook_events. Whichever
-- atelierd holds webhook settings claims new rows (FOR UPDATE SKIP LOCKED, so
-- two daemons never both send one event) and delivers them (orchestrator/
-- notify.c) to its --webhook-url list and to the `notify:` targets of the
-- pipeline concerned; every attempt's outcome lands in webhook_deliveries.
--
--   atelier_webhook_emit(kind, payload)       one outbox row + NOTIFY atelier_webhooks
--   atelier_webhook_scan_nodes(stale_s)        emits node.unhealthy once per node that went silent
--   atelier_webhook_claim(limit)               -> rows of (id, kind, payload, created_at), marked claimed
--   atelier_webhook_prune(keep_days)           bounded retention of both tables
--   atelier_prometheus()                       the database's part of /metrics, as exposition text

CREATE TABLE webhook_events (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('run.failed', 'gate.failed', 'model.promoted', 'model.rolled_back',
                                              'model.auto_rolled_back', 'node.unhealthy', 'test')),
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    claimed_at  timestamptz
);
CREATE INDEX webhook_events_unclaimed ON webhook_events (id) WHERE claimed_at IS NULL;

CREATE TABLE webhook_deliveries (
    id           bigserial PRIMARY KEY,
    event_id     bigint REFERENCES webhook_events (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    url          text NOT NULL,
    secret_env   text,          -- a pipeline's notify target: the variable holding its key; NULL: --webhook-secret-file
    state        text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'dropped')),
    attempts     integer NOT NULL DEFAULT 0,
    last_status  integer,       -- HTTP status of the latest attempt (NULL: no answer)
    last_error   text,          -- why the latest attempt failed
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

-- Nodes already reported silent (so a node is reported once until it heartbeats again).
CREATE TABLE node_alerts (
    name   text PRIMARY KEY,
    since  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION atelier_webhook_emit(p_kind text, p_payload jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (kind, payload) VALUES (p_kind, p_payload);
    PERFORM pg_notify('atelier_webhooks', p_kind);
END $$;

-- ---- the triggers that emit ----

CREATE FUNCTION atelier_webhook_run_failed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM atelier_webhook_emit('run.failed', jsonb_build_object(
        'run', NEW.id, 'pipeline', NEW.pipeline, 'trigger', NEW.trigger, 'error', NEW.error,
        'started_at', NEW.started_at, 'finished_at', NEW.finished_at));
    RETURN NULL;
END $$;
CREATE TRIGGER runs_webhook_failed AFTER UPDATE OF state ON runs
    FOR EACH ROW WHEN (NEW.state = 'failed' AND OLD.state IS DISTINCT FROM 'failed')
    EXECUTE FUNCTION atelier_webhook_run_failed();

CREATE FUNCTION atelier_webhook_gate_failed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM atelier_webhook_emit('gate.failed', jsonb_build_object(
        'model', NEW.model, 'version', NEW.version, 'run', NEW.run_id,
        'reasons', coalesce(NEW.verdict->'reasons', '[]'), 'failed', coalesce(NEW.verdict->'failed', '[]')));
    RETURN NULL;
END $$;
CREATE TRIGGER model_versions_webhook_gate AFTER UPDATE OF verdict ON model_versions
    FOR EACH ROW WHEN (NEW.verdict->'passed' = 'false'::jsonb AND OLD.verdict IS DISTINCT FROM NEW.verdict)
    EXECUTE FUNCTION atelier_webhook_gate_failed();

CREATE FUNCTION atelier_webhook_promotion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM atelier_webhook_emit(CASE NEW.kind WHEN 'promote' THEN 'model.promoted'
                                               WHEN 'rollback' THEN 'model.rolled_back'
                                               ELSE 'model.auto_rolled_back' END,
        jsonb_build_object('model', NEW.model, 'channel', NEW.channel,
                           'from_version', (SELECT version FROM model_versions WHERE id = NEW.from_version_id),
                           'to_version', (SELECT version FROM model_versions WHERE id = NEW.to_version_id),
                           'actor', NEW.actor, 'reason', NEW.reason, 'run', NEW.run_id, 'ledger_id', NEW.id));
    RETURN NULL;
END $$;
CREATE TRIGGER promotions_webhook AFTER INSERT ON promotions
    FOR EACH ROW EXECUTE FUNCTION atelier_webhook_promotion();

-- A node is unhealthy when its heartbeats stopped for stale_s seconds. Called
-- by the delivering atelierd on its timer; reports each silence once.
CREATE FUNCTION atelier_webhook_scan_nodes(p_stale_s integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    r record;
BEGIN
    DELETE FROM node_alerts a USING nodes n WHERE n.name = a.name AND n.last_seen > a.since;
    FOR r IN SELECT n.* FROM nodes n
             WHERE n.last_seen < now() - make_interval(secs => p_stale_s)
               AND NOT EXISTS (SELECT 1 FROM node_alerts a WHERE a.name = n.name)
             ORDER BY n.name LIMIT 100 LOOP
        INSERT INTO node_alerts (name) VALUES (r.name) ON CONFLICT DO NOTHING;
        IF FOUND THEN
            PERFORM atelier_webhook_emit('node.unhealthy', jsonb_build_object(
                'node', r.name, 'model', r.model, 'channel', r.channel, 'version', r.version,
                'last_seen', r.last_seen, 'error_rate', r.error_rate, 'last_error', r.last_error));
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;

CREATE FUNCTION atelier_webhook_claim(p_limit integer)
RETURNS TABLE (id bigint, kind text, payload jsonb, created_at timestamptz) LANGUAGE sql AS $$
    UPDATE webhook_events e SET claimed_at = now()
    FROM (SELECT w.id FROM webhook_events w WHERE w.claimed_at IS NULL ORDER BY w.id LIMIT p_limit
          FOR UPDATE SKIP LOCKED) c
    WHERE e.id = c.id
    RETURNING e.id, e.kind, e.payload, e.created_at;
$$;

CREATE FUNCTION atelier_webhook_prune(p_keep_days integer) RETURNS void LANGUAGE sql AS $$
    DELETE FROM webhook_deliveries WHERE created_at < now() - make_interval(days => p_keep_days);
    DELETE FROM webhook_events WHERE created_at < now() - make_interval(days => p_keep_days);
$$;

-- ---- /metrics from the database ----
-- Every query below is bounded: runs and models are small tables (one row
-- per run / model), the queue counts read the partial index of queued jobs,
-- and job durations look at the newest 2000 jobs only (jobs has no index on
-- finished_at, and adding one would slow the queue's hot path).

CREATE FUNCTION atelier_prom_label(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(coalesce(v, ''), '\', '\\'), '"', '\"'), E'\n', '\n');
$$;

CREATE FUNCTION atelier_prometheus() RETURNS text LANGUAGE sql STABLE AS $$
WITH
runs_by_state AS (
    SELECT s.state, (SELECT count(*) FROM runs r WHERE r.state = s.state) AS n
    FROM unnest(ARRAY['queued', 'running', 'succeeded', 'failed', 'cancelled']) AS s(state)),
queue AS (
    SELECT kind, count(*) AS depth, extract(epoch FROM now() - min(created_at)) AS oldest
    FROM jobs WHERE state = 'queued' GROUP BY kind),
running AS (
    SELECT kind, count(*) AS n FROM jobs WHERE state = 'running' GROUP BY kind),
recent AS (
    SELECT kind, state, extract(epoch FROM finished_at - started_at) AS secs
    FROM (SELECT kind, state, started_at, finished_at FROM jobs ORDER BY id DESC LIMIT 2000) j
    WHERE state IN ('succeeded', 'failed') AND started_at IS NOT NULL AND finished_at IS NOT NULL
      AND finished_at > now() - interval '1 hour'),
durations AS (
    SELECT kind, q.q,
           percentile_cont(q.q) WITHIN GROUP (ORDER BY secs) AS v
    FROM recent, unnest(ARRAY[0.5, 0.95, 1.0]) AS q(q) GROUP BY kind, q.q),
finished AS (
    SELECT kind, state, count(*) AS n, sum(secs) AS total FROM recent GROUP BY kind, state),
last_promo AS (
    SELECT model, extract(epoch FROM max(created_at)) AS ts FROM promotions
    WHERE kind = 'promote' AND channel = 'production' GROUP BY model),
prod AS (
    SELECT c.model, v.version, v.metrics->'holdout' AS holdout
    FROM channels c JOIN model_versions v ON v.id = c.version_id WHERE c.channel = 'production'),
scores AS (
    SELECT p.model, p.version, kv.key, kv.value::text::double precision AS v
    FROM prod p, jsonb_each(CASE WHEN jsonb_typeof(p.holdout) = 'object' THEN p.holdout ELSE '{}' END) kv
    WHERE jsonb_typeof(kv.value) = 'number'),
node_rows AS (
    SELECT name, model, (last_seen > now() - interval '30 seconds')::int AS up, error_rate, p95_ms,
           extract(epoch FROM last_seen) AS seen
    FROM nodes ORDER BY name LIMIT 1000)
SELECT concat_ws(E'\n',
  '# HELP atelier_runs Runs by state (all runs in the database).',
  '# TYPE atelier_runs gauge',
  (SELECT string_agg(format('atelier_runs{state="%s"} %s', state, n), E'\n' ORDER BY state) FROM runs_by_state),
  '# HELP atelier_queue_depth Queued jobs by kind.',
  '# TYPE atelier_queue_depth gauge',
  (SELECT string_agg(format('atelier_queue_depth{kind="%s"} %s', atelier_prom_label(kind), depth), E'\n'
                     ORDER BY kind) FROM queue),
  '# HELP atelier_queue_oldest_age_seconds Age of the oldest queued job by kind.',
  '# TYPE atelier_queue_oldest_age_seconds gauge',
  (SELECT string_agg(format('atelier_queue_oldest_age_seconds{kind="%s"} %s', atelier_prom_label(kind),
                            round(oldest::numeric, 3)), E'\n' ORDER BY kind) FROM queue),
  '# HELP atelier_jobs_running Running jobs by kind.',
  '# TYPE atelier_jobs_running gauge',
  (SELECT string_agg(format('atelier_jobs_running{kind="%s"} %s', atelier_prom_label(kind), n), E'\n'
                     ORDER BY kind) FROM running),
  '# HELP atelier_job_duration_seconds Duration of jobs finished in the last hour (of the newest 2000 jobs), by kind: quantiles 0.5, 0.95, 1 (max).',
  '# TYPE atelier_job_duration_seconds gauge',
  (SELECT string_agg(format('atelier_job_duration_seconds{kind="%s",quantile="%s"} %s', atelier_prom_label(kind),
                            q, round(v::numeric, 3)), E'\n' ORDER BY kind, q) FROM durations),
  '# HELP atelier_jobs_finished_last_hour Jobs finished in the last hour (of the newest 2000 jobs), by kind and state.',
  '# TYPE atelier_jobs_finished_last_hour gauge',
  (SELECT string_agg(format('atelier_jobs_finished_last_hour{kind="%s",state="%s"} %s', atelier_prom_label(kind),
                            state, n), E'\n' ORDER BY kind, state) FROM finished),
  '# HELP atelier_model_last_promotion_timestamp_seconds Time of the last promotion to production, by model (unix).',
  '# TYPE atelier_model_last_promotion_timestamp_seconds gauge',
  (SELECT string_agg(format('atelier_model_last_promotion_timestamp_seconds{model="%s"} %s', model,
                            round(ts::numeric, 3)), E'\n' ORDER BY model) FROM last_promo),
  '# HELP atelier_model_production_version The version on the production channel, by model.',
  '# TYPE atelier_model_production_version gauge',
  (SELECT string_agg(format('atelier_model_production_version{model="%s"} %s', model, version), E'\n'
                     ORDER BY model) FROM prod),
  '# HELP atelier_model_production_score Holdout evaluation scores of the production version, by model and metric.',
  '# TYPE atelier_model_production_score gauge',
  (SELECT string_agg(format('atelier_model_production_score{model="%s",metric="%s"} %s', model,
                            atelier_prom_label(key), v), E'\n' ORDER BY model, key) FROM scores),
  '# HELP atelier_node_up 1 while a serving node heartbeats (within 30 s).',
  '# TYPE atelier_node_up gauge',
  (SELECT string_agg(format('atelier_node_up{node="%s",model="%s"} %s', atelier_prom_label(name),
                            atelier_prom_label(model), up), E'\n' ORDER BY name) FROM node_rows),
  '# HELP atelier_node_error_rate Error rate a serving node reported in its last heartbeat.',
  '# TYPE atelier_node_error_rate gauge',
  (SELECT string_agg(format('atelier_node_error_rate{node="%s",model="%s"} %s', atelier_prom_label(name),
                            atelier_prom_label(model), error_rate), E'\n' ORDER BY name)
   FROM node_rows WHERE error_rate IS NOT NULL),
  '# HELP atelier_webhook_backlog Alert events not yet claimed for delivery.',
  '# TYPE atelier_webhook_backlog gauge',
  (SELECT format('atelier_webhook_backlog %s', count(*)) FROM webhook_events WHERE claimed_at IS NULL)
) || E'\n';
$$;
