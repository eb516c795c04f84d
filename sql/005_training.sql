-- 005_training.sql — what the training stages keep durably besides their
-- job results: the frozen holdout set of a dataset, and training checkpoints.
--
-- dataset_members (004) is exactly what a model trained on (lineage);
-- dataset_holdout is the held-out set frozen with it, on which evaluate scores
-- candidate and champion alike. collect writes both in one transaction, keyed
-- by its job (datasets.params->>'job'), so a retried collect finds the dataset
-- it already froze instead of freezing a second one.

CREATE TABLE dataset_holdout (
    dataset_id  bigint NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    image_id    bigint NOT NULL REFERENCES images (id),
    PRIMARY KEY (dataset_id, image_id)
);

CREATE UNIQUE INDEX datasets_collect_job ON datasets (((params->>'job')::bigint)) WHERE params ? 'job';

-- The checkpoints a train job wrote, newest step last. A job re-claimed after
-- its worker died resumes from its highest step here (at most
-- checkpoint_every steps are lost). parent_version_id is the warm-start
-- version the run began from, kept so a resumed attempt names the same parent
-- even if production moved meanwhile.
CREATE TABLE train_checkpoints (
    job_id             bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step               bigint NOT NULL CHECK (step > 0),
    sha256             text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    parent_version_id  bigint REFERENCES model_versions (id),
    attempt            integer NOT NULL,
    worker             text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, step)
);
