-- 017_hosts.sql — issue 16, several hosts: fencing what a handler writes for its job.
--
-- A worker cut off from the database (a partitioned host) keeps running its
-- job; the lease runs out, the leader reaps the job and another worker takes
-- it on, resuming from the last checkpoint. When the cut-off worker comes
-- back, its completion is refused (owner_token, 002_queue.sql), but what the
-- handler wrote before completing went through unfenced: a train job's
-- checkpoint row (upserted over the new owner's row at the same step) and its
-- model version (a second version for the run, when its export differs from
-- the new owner's). A handler's writes for its job are now conditional on
-- this: true while (id, token) owns the job and its lease has not run out.
-- The job's row stays locked until the caller's transaction ends, so the
-- reaper (FOR UPDATE SKIP LOCKED) cannot take the job away between the check
-- and the write.
CREATE FUNCTION atelier_job_owned(p_id bigint, p_token bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM jobs
     WHERE id = p_id AND owner_token = p_token AND lease_expires_at > clock_timestamp()
       FOR UPDATE;
    RETURN FOUND;
END $$;
