-- 001_foundation.sql — tokens and the image store (sketches and paintings).
--
-- Migrations are applied in file-name order by db_migrate(), each in its own
-- transaction, recorded in schema_migrations (created by db_migrate itself).

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,           -- sha256 of the token; the token itself is never stored
    role        text NOT NULL CHECK (role IN ('operator', 'node', 'viewer')),
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- One table for both domains: a sketch (what people draw, grayscale) and a
-- painting (the style domain, RGB). Pixels are stored normalised (canonical
-- size, white background) as PNG; sha256 is over the normalised pixels, so the
-- same drawing uploaded as PNG or JPEG-at-same-pixels is one row.
CREATE TABLE images (
    id           bigserial PRIMARY KEY,
    domain       text NOT NULL CHECK (domain IN ('sketch', 'painting')),
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),
    width        integer NOT NULL CHECK (width > 0),
    height       integer NOT NULL CHECK (height > 0),
    channels     integer NOT NULL CHECK (channels IN (1, 3)),
    png          bytea NOT NULL,
    ink_ratio    real NOT NULL,
    split        text NOT NULL CHECK (split IN ('train', 'holdout')),
    status       text NOT NULL DEFAULT 'accepted' CHECK (status IN ('accepted', 'rejected', 'deleted')),
    contributor  text,
    consent      boolean,
    source       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain, sha256)
);
CREATE INDEX images_domain_split_id ON images (domain, split, id) WHERE status = 'accepted';

CREATE VIEW sketches AS
    SELECT id, encode(sha256, 'hex') AS sha256, width, height, ink_ratio, split, status, contributor, consent, source, created_at
    FROM images WHERE domain = 'sketch';
CREATE VIEW paintings AS
    SELECT id, encode(sha256, 'hex') AS sha256, width, height, ink_ratio, split, status, contributor, consent, source, created_at
    FROM images WHERE domain = 'painting';

-- For dashboards: accepted images per domain, split and day.
CREATE VIEW ingest_daily AS
    SELECT domain, split, date_trunc('day', created_at) AS day, count(*) AS accepted
    FROM images WHERE status = 'accepted' GROUP BY 1, 2, 3;

-- Any change to tokens (new, revoked) tells every atelierd to drop its token cache.
CREATE FUNCTION atelier_tokens_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('atelier_tokens', '');
    RETURN NULL;
END $$;
CREATE TRIGGER api_tokens_changed AFTER INSERT OR UPDATE OR DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION atelier_tokens_changed();

-- Every accepted image wakes the scheduler (new_sketches triggers): payload is
-- "domain:split:id".
CREATE FUNCTION atelier_image_ingested() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('atelier_ingest', NEW.domain || ':' || NEW.split || ':' || NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER images_ingested AFTER INSERT ON images
    FOR EACH ROW EXECUTE FUNCTION atelier_image_ingested();
