-- 004_registry.sql — datasets (lineage), the model registry, channels with an
-- append-only promotion ledger, and serving nodes.
--
--   atelier_register_version(model, sha256, size, uri, run, dataset, parent, config, metrics, verdict)
--                                 -> (version_id, version, created)   idempotent by (model, sha256)
--   atelier_move_channel(model, channel, version_id, actor, reason, kind, run)
--                                 -> (moved, from_version_id)          idempotent: no row when already there
--   atelier_rollback(model, channel, actor, reason, kind, run)
--                                 -> (moved, from_version_id, to_version_id)
--
-- Every channel move is one ledger row and one NOTIFY 'atelier_channels'
-- (payload "model:channel:version"), which wakes the long-polling serving
-- nodes of every atelierd.

CREATE TABLE datasets (
    id               bigserial PRIMARY KEY,
    run_id           bigint REFERENCES runs (id) ON DELETE SET NULL,
    manifest_sha256  text NOT NULL CHECK (manifest_sha256 ~ '^[0-9a-f]{64}$'),
    sketches         integer NOT NULL,
    paintings        integer NOT NULL,
    params           jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE dataset_members (
    dataset_id  bigint NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    image_id    bigint NOT NULL REFERENCES images (id),
    PRIMARY KEY (dataset_id, image_id)
);

CREATE TABLE models (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_versions (
    id                 bigserial PRIMARY KEY,
    model              text NOT NULL REFERENCES models (name),
    version            integer NOT NULL CHECK (version > 0),
    sha256             text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size               bigint NOT NULL CHECK (size >= 0),
    artifact_uri       text NOT NULL,
    run_id             bigint REFERENCES runs (id) ON DELETE SET NULL,
    dataset_id         bigint REFERENCES datasets (id),
    parent_version_id  bigint REFERENCES model_versions (id),
    config             jsonb NOT NULL DEFAULT '{}',
    metrics            jsonb NOT NULL DEFAULT '{}',
    verdict            jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model, version),
    UNIQUE (model, sha256)
);

CREATE TABLE channels (
    model       text NOT NULL REFERENCES models (name),
    channel     text NOT NULL CHECK (channel IN ('canary', 'production')),
    version_id  bigint REFERENCES model_versions (id),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, channel)
);

CREATE TABLE promotions (
    id               bigserial PRIMARY KEY,
    model            text NOT NULL,
    channel          text NOT NULL,
    from_version_id  bigint REFERENCES model_versions (id),
    to_version_id    bigint REFERENCES model_versions (id),
    kind             text NOT NULL CHECK (kind IN ('promote', 'rollback', 'auto-rollback')),
    actor            text NOT NULL,
    reason           text,
    run_id           bigint REFERENCES runs (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX promotions_model_channel ON promotions (model, channel, id DESC);

CREATE FUNCTION atelier_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the promotion ledger is append-only' USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER promotions_append_only BEFORE UPDATE OR DELETE ON promotions
    FOR EACH ROW EXECUTE FUNCTION atelier_ledger_append_only();

CREATE TABLE nodes (
    name         text PRIMARY KEY,
    model        text,
    channel      text,
    version      integer,
    requests     bigint NOT NULL DEFAULT 0,
    errors       bigint NOT NULL DEFAULT 0,
    error_rate   real,
    p50_ms       real,
    p95_ms       real,
    last_error   text,
    info         jsonb NOT NULL DEFAULT '{}',
    started_at   timestamptz,
    last_seen    timestamptz NOT NULL DEFAULT now()
);
-- Heartbeat history for canary bakes (the promote stage reads the window).
CREATE TABLE node_heartbeats (
    node        text NOT NULL,
    model       text,
    channel     text,
    version     integer,
    requests    bigint,
    errors      bigint,
    error_rate  real,
    p95_ms      real,
    ts          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX node_heartbeats_model_ts ON node_heartbeats (model, channel, ts);

CREATE FUNCTION atelier_register_version(p_model text, p_sha text, p_size bigint, p_uri text, p_run bigint,
                                         p_dataset bigint, p_parent bigint, p_config jsonb, p_metrics jsonb,
                                         p_verdict jsonb,
                                         OUT version_id bigint, OUT version integer, OUT created boolean)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO models (name) VALUES (p_model) ON CONFLICT DO NOTHING;
    PERFORM 1 FROM models WHERE name = p_model FOR UPDATE;
    SELECT v.id, v.version INTO version_id, version FROM model_versions v WHERE v.model = p_model AND v.sha256 = p_sha;
    IF FOUND THEN
        created := false;
        RETURN;
    END IF;
    SELECT coalesce(max(v.version), 0) + 1 INTO version FROM model_versions v WHERE v.model = p_model;
    INSERT INTO model_versions (model, version, sha256, size, artifact_uri, run_id, dataset_id, parent_version_id,
                                config, metrics, verdict)
        VALUES (p_model, version, p_sha, p_size, p_uri, p_run, p_dataset, p_parent, coalesce(p_config, '{}'),
                coalesce(p_metrics, '{}'), p_verdict)
        RETURNING id INTO version_id;
    created := true;
END $$;

CREATE FUNCTION atelier_move_channel(p_model text, p_channel text, p_version bigint, p_actor text, p_reason text,
                                     p_kind text, p_run bigint, OUT moved boolean, OUT from_version_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_num integer;
BEGIN
    SELECT version INTO v_num FROM model_versions WHERE id = p_version AND model = p_model;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no version % of model %', p_version, p_model USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO channels (model, channel, version_id) VALUES (p_model, p_channel, NULL) ON CONFLICT DO NOTHING;
    SELECT c.version_id INTO from_version_id FROM channels c
        WHERE c.model = p_model AND c.channel = p_channel FOR UPDATE;
    IF from_version_id IS NOT DISTINCT FROM p_version THEN
        moved := false;  -- already there: a retried promotion writes nothing
        RETURN;
    END IF;
    UPDATE channels SET version_id = p_version, updated_at = now() WHERE model = p_model AND channel = p_channel;
    INSERT INTO promotions (model, channel, from_version_id, to_version_id, kind, actor, reason, run_id)
        VALUES (p_model, p_channel, from_version_id, p_version, p_kind, p_actor, p_reason, p_run);
    PERFORM pg_notify('atelier_channels', p_model || ':' || p_channel || ':' || v_num);
    moved := true;
END $$;

-- Back to the version the channel held before its last move.
CREATE FUNCTION atelier_rollback(p_model text, p_channel text, p_actor text, p_reason text, p_kind text,
                                 p_run bigint, OUT moved boolean, OUT from_version_id bigint,
                                 OUT to_version_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_cur bigint;
BEGIN
    SELECT c.version_id INTO v_cur FROM channels c WHERE c.model = p_model AND c.channel = p_channel FOR UPDATE;
    IF v_cur IS NULL THEN
        RAISE EXCEPTION 'channel %/% has no version to roll back from', p_model, p_channel
            USING ERRCODE = 'no_data_found';
    END IF;
    SELECT p.from_version_id INTO to_version_id FROM promotions p
        WHERE p.model = p_model AND p.channel = p_channel AND p.to_version_id = v_cur
        ORDER BY p.id DESC LIMIT 1;
    IF to_version_id IS NULL THEN
        RAISE EXCEPTION 'channel %/% has no earlier version', p_model, p_channel USING ERRCODE = 'no_data_found';
    END IF;
    SELECT m.moved, m.from_version_id INTO moved, from_version_id
        FROM atelier_move_channel(p_model, p_channel, to_version_id, p_actor, p_reason, p_kind, p_run) m;
END $$;

CREATE VIEW model_lineage AS
SELECT v.model, v.version, v.id AS version_id, v.sha256, v.size, v.created_at, v.run_id, r.pipeline,
       v.dataset_id, d.manifest_sha256 AS dataset_manifest, d.sketches AS dataset_sketches,
       d.paintings AS dataset_paintings, pv.version AS parent_version, v.metrics, v.verdict,
       (SELECT array_agg(c.channel ORDER BY c.channel) FROM channels c WHERE c.version_id = v.id) AS channels
FROM model_versions v
LEFT JOIN runs r ON r.id = v.run_id
LEFT JOIN datasets d ON d.id = v.dataset_id
LEFT JOIN model_versions pv ON pv.id = v.parent_version_id;
