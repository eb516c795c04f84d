-- 012_abuse.sql — issue 15, abuse resistance at ingest.
--
-- Issue 15: atelierd counts a contributor's sketches of the last 24 hours at
-- each upload that names one (--max-sketches-per-contributor-day); this
-- index makes that count a range scan of the contributor's own rows.
CREATE INDEX images_sketch_contributor_created ON images (contributor, created_at)
    WHERE domain = 'sketch' AND contributor IS NOT NULL;

-- Near-duplicate sketches: a 64-bit dHash of the normalised pixels
-- (lib/image.c image_dhash64), NULL for rows stored before it. Looked up by
-- Hamming distance through four 16-bit bands, each indexed: two hashes within
-- distance 3 share at least one band exactly (pigeonhole), so the OR of four
-- index lookups finds every candidate and only those are compared.
ALTER TABLE images ADD COLUMN phash bigint;
CREATE INDEX images_phash_b0 ON images (((phash >> 48) & 65535)) WHERE domain = 'sketch' AND phash IS NOT NULL;
CREATE INDEX images_phash_b1 ON images (((phash >> 32) & 65535)) WHERE domain = 'sketch' AND phash IS NOT NULL;
CREATE INDEX images_phash_b2 ON images (((phash >> 16) & 65535)) WHERE domain = 'sketch' AND phash IS NOT NULL;
CREATE INDEX images_phash_b3 ON images ((phash & 65535)) WHERE domain = 'sketch' AND phash IS NOT NULL;
