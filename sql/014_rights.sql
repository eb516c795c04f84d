-- 014_rights.sql — contributors' rights (issue 15): receipts, withdrawal,
-- lineage of a sketch, the rights audit and the `deletions:` trigger.
--
--   atelier_withdraw_sketches(ids, actor, how)  -> the ids withdrawn now
--   atelier_sketch_versions(image_id)           -> the model versions that saw it
--   atelier_version_withdrawn(version_id)       -> withdrawn sketches it trained on
--
-- A receipt is 32 random bytes made by the serving node that accepted the
-- contribution; only its sha256 reaches atelierd (images.receipt_sha256).
-- Withdrawal is one UPDATE: status 'deleted' and the pixels gone (png set to
-- the empty bytea, the perceptual hash cleared) together, so a trigger that
-- reacts to status = 'deleted' (published works made from the sketch) and the
-- pixels can never disagree. The old tuple stays in the heap and in the png
-- column's TOAST table until VACUUM reclaims it (docs/design.md, "Withdrawal").
-- sha256 stays: it is a hash, not the drawing, and it keeps a withdrawn
-- drawing from coming back through another upload of the same pixels.

ALTER TABLE images ADD COLUMN receipt_sha256 bytea CHECK (receipt_sha256 IS NULL OR length(receipt_sha256) = 32),
                   ADD COLUMN deleted_at timestamptz;
CREATE INDEX images_receipt ON images (receipt_sha256) WHERE receipt_sha256 IS NOT NULL;
-- Withdrawn rows are few: the lineage flag and the deletions trigger start from them.
CREATE INDEX images_deleted ON images (deleted_at, id) WHERE status = 'deleted';

-- What was done to whose data, when, by whom: never pixels, never a whole
-- receipt (actor is "receipt:" and the first 12 hex digits of its sha256, or
-- "operator:" and the token's name). Append-only: the trigger below refuses
-- UPDATE, DELETE and TRUNCATE for every role, the owner's included.
CREATE TABLE rights_audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    action     text NOT NULL CHECK (action IN ('withdraw')),
    kind       text NOT NULL CHECK (kind IN ('sketch', 'work')),
    object_id  bigint NOT NULL,
    actor      text NOT NULL,
    how        text NOT NULL      -- 'receipt', 'id' or 'contributor'
);
CREATE INDEX rights_audit_object ON rights_audit (kind, object_id);

CREATE FUNCTION atelier_rights_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rights_audit is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER rights_audit_append_only BEFORE UPDATE OR DELETE ON rights_audit
    FOR EACH ROW EXECUTE FUNCTION atelier_rights_audit_append_only();
CREATE TRIGGER rights_audit_no_truncate BEFORE TRUNCATE ON rights_audit
    FOR EACH STATEMENT EXECUTE FUNCTION atelier_rights_audit_append_only();

-- Withdraws the sketches among p_ids that are not withdrawn yet; returns
-- those ids. One audit row each, and a NOTIFY so the scheduler looks at the
-- `deletions:` triggers at once.
CREATE FUNCTION atelier_withdraw_sketches(p_ids bigint[], p_actor text, p_how text)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    RETURN QUERY
    WITH w AS (
        UPDATE images i SET status = 'deleted', png = '\x'::bytea, phash = NULL, deleted_at = clock_timestamp()
         WHERE i.id = ANY (p_ids) AND i.domain = 'sketch' AND i.status <> 'deleted'
        RETURNING i.id),
    a AS (
        INSERT INTO rights_audit (action, kind, object_id, actor, how)
        SELECT 'withdraw', 'sketch', w.id, p_actor, p_how FROM w ORDER BY w.id
        RETURNING object_id)
    SELECT object_id FROM a ORDER BY object_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        PERFORM pg_notify('atelier_ingest', 'sketch:deleted:' || v_n);
    END IF;
END $$;

-- The versions whose training saw image p_image: trained on a dataset that
-- holds it, or fine-tuned (parent_version_id) from such a version.
CREATE FUNCTION atelier_sketch_versions(p_image bigint)
RETURNS TABLE (version_id bigint, direct boolean) LANGUAGE sql STABLE AS $$
    WITH RECURSIVE saw AS (
        SELECT v.id, true AS direct FROM model_versions v
         WHERE v.dataset_id IN (SELECT m.dataset_id FROM dataset_members m WHERE m.image_id = p_image)
        UNION
        SELECT c.id, false FROM model_versions c JOIN saw ON c.parent_version_id = saw.id)
    SELECT id, bool_or(direct) FROM saw GROUP BY id;
$$;

-- The datasets a version trained on: its own and its ancestors'.
CREATE FUNCTION atelier_version_datasets(p_version bigint)
RETURNS TABLE (dataset_id bigint) LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up AS (
        SELECT v.id, v.parent_version_id, v.dataset_id FROM model_versions v WHERE v.id = p_version
        UNION
        SELECT p.id, p.parent_version_id, p.dataset_id FROM model_versions p JOIN up ON p.id = up.parent_version_id)
    SELECT DISTINCT up.dataset_id FROM up WHERE up.dataset_id IS NOT NULL;
$$;

-- How many withdrawn sketches a version trained on (itself or through its
-- ancestors). Starts from the withdrawn rows (images_deleted), which are few.
CREATE FUNCTION atelier_version_withdrawn(p_version bigint)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT count(DISTINCT i.id)::integer FROM images i JOIN dataset_members m ON m.image_id = i.id
     WHERE i.status = 'deleted' AND m.dataset_id IN (SELECT dataset_id FROM atelier_version_datasets(p_version));
$$;

CREATE OR REPLACE VIEW model_lineage AS
SELECT v.model, v.version, v.id AS version_id, v.sha256, v.size, v.created_at, v.run_id, r.pipeline,
       v.dataset_id, d.manifest_sha256 AS dataset_manifest, d.sketches AS dataset_sketches,
       d.paintings AS dataset_paintings, pv.version AS parent_version, v.metrics, v.verdict,
       (SELECT array_agg(c.channel ORDER BY c.channel) FROM channels c WHERE c.version_id = v.id) AS channels,
       atelier_version_withdrawn(v.id) AS withdrawn_sketches
FROM model_versions v
LEFT JOIN runs r ON r.id = v.run_id
LEFT JOIN datasets d ON d.id = v.dataset_id
LEFT JOIN model_versions pv ON pv.id = v.parent_version_id;

-- As in 008, and `deletions: N`: at least N sketches withdrawn since the
-- pipeline's last run (or its first apply) were in the training data of the
-- model's production version (its dataset or an ancestor's).
CREATE OR REPLACE FUNCTION atelier_check_triggers() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    p record;
    v_n integer;
    v_del integer;
    v_every bigint;
    v_mark bigint;
    v_last timestamptz;
    v_since timestamptz;
    v_count bigint;
    v_made integer := 0;
    v_run bigint;
    v_coalesced boolean;
    v_prod bigint;
BEGIN
    FOR p IN SELECT pl.name, v.parsed FROM pipelines pl JOIN pipeline_versions v ON v.id = pl.current_version_id
             ORDER BY pl.name LOOP
        v_n := coalesce((p.parsed->'triggers'->>'new_sketches')::int, 0);
        v_del := coalesce((p.parsed->'triggers'->>'deletions')::int, 0);
        v_every := coalesce((p.parsed->'triggers'->>'every_ms')::bigint, 0);
        CONTINUE WHEN v_n = 0 AND v_every = 0 AND v_del = 0;
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
        IF v_del > 0 THEN
            SELECT c.version_id INTO v_prod FROM channels c
             WHERE c.model = p.parsed->>'model' AND c.channel = 'production';
            IF v_prod IS NOT NULL THEN
                v_since := v_last;
                SELECT count(*) INTO v_count FROM (
                    SELECT DISTINCT i.id FROM images i JOIN dataset_members m ON m.image_id = i.id
                     WHERE i.status = 'deleted' AND i.deleted_at > v_since
                       AND m.dataset_id IN (SELECT dataset_id FROM atelier_version_datasets(v_prod))) s;
                IF v_count >= v_del THEN
                    SELECT run_id, coalesced INTO v_run, v_coalesced FROM atelier_create_run(p.name, 'deletions');
                    IF NOT v_coalesced THEN
                        v_made := v_made + 1;
                    END IF;
                    CONTINUE;
                END IF;
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
