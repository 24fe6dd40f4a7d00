-- Every renewal of a lease bumps `renewals`, so a contender can tell a
-- lease that is still being renewed from one that is not without reading
-- any clock but its own: it takes a lease only after seeing the same
-- (token, renewals) for a whole lease time on its monotonic clock. The
-- store's wall clock (expires_at_us) no longer decides who may take over;
-- a step of that clock cannot hand a live lease to a second holder.
ALTER TABLE leases ADD COLUMN renewals BIGINT NOT NULL DEFAULT 0;
