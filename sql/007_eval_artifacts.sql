-- 007_eval_artifacts.sql — which files of the artifact store the API may serve.
--
-- GET /v1/artifacts/{sha256} serves a file only when something in the
-- database names it: a model version (model_versions.sha256), a training
-- checkpoint (train_checkpoints.sha256), or a row here. Prepare adds the
-- shards it wrote (kind 'shard'), evaluate its gallery (sketches and outputs
-- as PNG, kind 'sample'); content_type is what the route answers with.
-- Every lookup is one index probe (registry.c's artifact_known_sql).

CREATE TABLE artifact_refs (
    sha256        text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    kind          text NOT NULL CHECK (kind IN ('sample', 'shard')),
    content_type  text NOT NULL DEFAULT 'application/octet-stream',
    run_id        bigint REFERENCES runs (id) ON DELETE SET NULL,
    version_id    bigint REFERENCES model_versions (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX model_versions_sha256 ON model_versions (sha256);
CREATE INDEX train_checkpoints_sha256 ON train_checkpoints (sha256);
