-- 009_node_trust.sql — a node token speaks for one serving node only
-- (docs/serving.md, "Node tokens and heartbeats").
--
--   * api_tokens.node: the serving-node name a node token is bound to.
--     `atelierd token create --role node --node NAME` binds at creation; a node
--     token created without --node (every one made before this migration)
--     binds to the first name it heartbeats as, provided no other live token
--     holds that name. From then on it may heartbeat only as that name, and the
--     images it uploads are stored with source "node:NAME".
--   * atelier_node_heartbeat(): binding check, the nodes upsert, the history
--     row and a bounded prune of old history in one round trip.
--   * node_heartbeats_ts: the prune walks the oldest rows by time.

ALTER TABLE api_tokens ADD COLUMN node text CHECK (node ~ '^[A-Za-z0-9._-]{1,64}$');
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_node_role CHECK (node IS NULL OR role = 'node');
CREATE INDEX api_tokens_node ON api_tokens (node) WHERE node IS NOT NULL AND revoked_at IS NULL;

CREATE INDEX node_heartbeats_ts ON node_heartbeats (ts);

-- p_token: the id of the node token that sent it (NULL: an operator, who may
-- report for any node). p_hb: the validated heartbeat (orchestrator/nodes.c
-- builds it from known fields only); p_info: the extra fields kept in
-- nodes.info. Returns 'ok', 'bound' (ok, and the token was bound to this
-- name just now), 'revoked', 'taken' (another live token holds the
-- name) or 'bound:NAME' (this token is bound to another name). At most 1000
-- history rows older than p_keep_days go per call: bounded work, and enough to
-- keep up with any fleet that sends fewer than 1000 heartbeats per heartbeat.
CREATE FUNCTION atelier_node_heartbeat(p_token bigint, p_hb jsonb, p_info jsonb, p_keep_days integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_name text := p_hb->>'node';
    v_bound text;
    v_out text := 'ok';
BEGIN
    IF p_token IS NOT NULL THEN
        SELECT node INTO v_bound FROM api_tokens WHERE id = p_token AND revoked_at IS NULL FOR UPDATE;
        IF NOT FOUND THEN
            RETURN 'revoked';
        END IF;
        IF v_bound IS NULL THEN
            -- two unbound tokens claiming one name at once: one waits for the other
            -- (the two-int key space: 7316004 and the name's hash; 006 lists the bigint keys)
            PERFORM pg_advisory_xact_lock(7316004, hashtext(v_name));
            IF EXISTS (SELECT 1 FROM api_tokens WHERE node = v_name AND revoked_at IS NULL) THEN
                RETURN 'taken';
            END IF;
            UPDATE api_tokens SET node = v_name WHERE id = p_token;
            v_out := 'bound';
        ELSIF v_bound <> v_name THEN
            RETURN 'bound:' || v_bound;
        END IF;
    END IF;
    INSERT INTO nodes (name, model, channel, version, requests, errors, error_rate, p50_ms, p95_ms, last_error,
                       info, started_at, last_seen)
    VALUES (v_name, p_hb->>'model', p_hb->>'channel', (p_hb->>'version')::int,
            coalesce((p_hb->>'requests')::bigint, 0), coalesce((p_hb->>'errors')::bigint, 0),
            (p_hb->>'error_rate')::real, (p_hb->>'p50_ms')::real, (p_hb->>'p95_ms')::real, p_hb->>'last_error',
            p_info, to_timestamp((p_hb->>'started_at')::double precision), now())
    ON CONFLICT (name) DO UPDATE SET model = EXCLUDED.model, channel = EXCLUDED.channel,
        version = EXCLUDED.version, requests = EXCLUDED.requests, errors = EXCLUDED.errors,
        error_rate = EXCLUDED.error_rate, p50_ms = EXCLUDED.p50_ms, p95_ms = EXCLUDED.p95_ms,
        last_error = EXCLUDED.last_error, info = EXCLUDED.info, started_at = EXCLUDED.started_at,
        last_seen = now();
    INSERT INTO node_heartbeats (node, model, channel, version, requests, errors, error_rate, p95_ms)
    VALUES (v_name, p_hb->>'model', p_hb->>'channel', (p_hb->>'version')::int, (p_hb->>'requests')::bigint,
            (p_hb->>'errors')::bigint, (p_hb->>'error_rate')::real, (p_hb->>'p95_ms')::real);
    DELETE FROM node_heartbeats WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM node_heartbeats WHERE ts < now() - make_interval(days => p_keep_days)
         ORDER BY ts LIMIT 1000));
    RETURN v_out;
END $$;
