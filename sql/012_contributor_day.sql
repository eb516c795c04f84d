-- Issue 15: atelierd counts a contributor's sketches of the last 24 hours at
-- each upload that names one (--max-sketches-per-contributor-day); this
-- index makes that count a range scan of the contributor's own rows.
CREATE INDEX images_sketch_contributor_created ON images (contributor, created_at)
    WHERE domain = 'sketch' AND contributor IS NOT NULL;
