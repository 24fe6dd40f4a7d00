-- The off-site copy of a backup (a second object store, e.g. a bucket in
-- the other region), verified like the original.
ALTER TABLE backups ADD COLUMN offsite_store TEXT;
ALTER TABLE backups ADD COLUMN offsite_status TEXT;
ALTER TABLE backups ADD COLUMN offsite_error TEXT;
ALTER TABLE backups ADD COLUMN offsite_at_us BIGINT;
