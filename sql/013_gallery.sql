-- 013_gallery.sql — issue 15, the public gallery: works people publish from
-- the drawing page (orchestrator/works.c), and what becomes of them when
-- their sketch is withdrawn.
--
-- A work is the sketch as drawn, the painting as shown, the style that made
-- it (jsonb as the page sent it to /api/stylize: {"style":N}, a mix
-- {"style":N,"style2":M,"alpha":a}, or {"reference":true}) and the model
-- version. Its images are bytea in this row, not in the artifact store: the
-- store is content-addressed and immutable (models, shards), while a work's
-- pixels must go at once and for good when it or its sketch is withdrawn,
-- in the same transaction that records the withdrawal. A NULL image is a
-- withdrawn one.
--
-- rev orders every change (insert, hide, unhide, withdraw) from one sequence:
-- serving nodes read GET /v1/works/changes?after=REV and so learn of new and
-- vanished works without scanning the table.
--
-- The receipt (a token the node shows its publisher once) is stored only as
-- its sha256; the token itself never reaches the database.
CREATE SEQUENCE works_rev_seq;
CREATE TABLE works (
    id             bigserial PRIMARY KEY,
    rev            bigint NOT NULL DEFAULT nextval('works_rev_seq'),
    status         text NOT NULL DEFAULT 'published' CHECK (status IN ('published', 'hidden', 'withdrawn')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    title          text CHECK (char_length(title) <= 120),
    author         text CHECK (char_length(author) <= 64),
    style          jsonb NOT NULL,
    style_key      text NOT NULL CHECK (style_key ~ '^([0-9]{1,10}(\+[0-9]{1,10}@[0-9]\.[0-9]{2})?|reference)$'),
    model          text,
    model_version  integer CHECK (model_version >= 0),
    node           text,
    sketch         bytea,
    sketch_type    text NOT NULL CHECK (sketch_type IN ('image/png', 'image/jpeg')),
    painting       bytea,
    painting_type  text NOT NULL CHECK (painting_type IN ('image/png', 'image/jpeg')),
    -- the sketch's sha256 as ingest computes it (over the normalised pixels,
    -- lib/image.h): equal to images.sha256 of the same drawing contributed
    sketch_sha256  bytea NOT NULL CHECK (length(sketch_sha256) = 32),
    receipt_sha256 bytea NOT NULL UNIQUE CHECK (length(receipt_sha256) = 32),
    changed_by     text
);
ALTER SEQUENCE works_rev_seq OWNED BY works.rev;
CREATE INDEX works_rev ON works (rev);
CREATE INDEX works_wall ON works (id DESC) WHERE status = 'published';
CREATE INDEX works_wall_style ON works (style_key, id DESC) WHERE status = 'published';
CREATE INDEX works_sketch ON works (sketch_sha256);

-- Every change takes a new rev (the feed's cursor); a withdrawn work loses
-- its pixels in the same statement, whoever withdrew it.
CREATE FUNCTION atelier_works_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.status = 'withdrawn' THEN
            NEW.status := 'withdrawn'; -- final: no way back
        END IF;
        IF NEW.status = OLD.status AND NEW.title IS NOT DISTINCT FROM OLD.title
           AND NEW.author IS NOT DISTINCT FROM OLD.author THEN
            RETURN NEW;
        END IF;
        NEW.changed_at := now();
    ELSIF EXISTS (SELECT 1 FROM images WHERE domain = 'sketch' AND sha256 = NEW.sketch_sha256
                  AND status = 'deleted') THEN
        -- its sketch was withdrawn before: the drawing stays out of the gallery
        NEW.status := 'withdrawn';
        NEW.changed_by := 'sketch withdrawn';
    END IF;
    -- Revs must become visible in order, or a node that read rev 7 would
    -- never see a rev 6 committed after it: writers take the rev under a
    -- lock held to their commit (works change rarely; a bulk insert is one
    -- transaction).
    PERFORM pg_advisory_xact_lock(hashtext('atelier_works_rev'));
    NEW.rev := nextval('works_rev_seq');
    IF NEW.status = 'withdrawn' THEN
        NEW.sketch := NULL;
        NEW.painting := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER works_changed BEFORE INSERT OR UPDATE ON works
    FOR EACH ROW EXECUTE FUNCTION atelier_works_changed();

-- A sketch withdrawn (status 'deleted', whoever set it) withdraws every
-- work drawn from it: the rights code needs not know works exist. OLD.sha256:
-- the withdrawal may clear more of the row than the status.
CREATE FUNCTION atelier_sketch_withdrawn_works() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE works SET status = 'withdrawn', changed_by = 'sketch withdrawn'
     WHERE sketch_sha256 = OLD.sha256 AND status <> 'withdrawn';
    RETURN NULL;
END $$;
CREATE TRIGGER images_sketch_withdrawn_works AFTER UPDATE OF status ON images
    FOR EACH ROW WHEN (NEW.domain = 'sketch' AND NEW.status = 'deleted' AND OLD.status <> 'deleted')
    EXECUTE FUNCTION atelier_sketch_withdrawn_works();

-- One object per work for the API and the feed (no pixels); a function of
-- the row so that an UPDATE's RETURNING gives the row as it became.
CREATE FUNCTION atelier_work_json(w works) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', w.id, 'rev', w.rev, 'status', w.status, 'created_at', w.created_at, 'changed_at', w.changed_at,
        'title', w.title, 'name', w.author, 'style', w.style, 'style_key', w.style_key, 'model', w.model,
        'model_version', w.model_version, 'node', w.node, 'sketch_type', w.sketch_type,
        'painting_type', w.painting_type, 'sketch_sha256', encode(w.sketch_sha256, 'hex'),
        'sketch_bytes', coalesce(length(w.sketch), 0), 'painting_bytes', coalesce(length(w.painting), 0))
$$;
CREATE VIEW works_json AS
    SELECT w.id, w.rev, w.status, w.style_key, atelier_work_json(w) AS j FROM works w;
