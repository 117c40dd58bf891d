-- kvkeep index, schema version 7: how many listed objects each run left out, by reason, so
-- `kvkeep report` can say what a vault holds that its backups deliberately do not (#10).
--
-- Per run, from its plan: `skipped_managed` (a certificate's key or secret, which the
-- certificate's backup covers), `skipped_filtered` (not matched by `include`, or matched by
-- `exclude`) and `skipped_tagged` (carrying a skip tag). NULL means not known: runs recorded
-- before this version, runs that ended before planning, and runs rebuilt from manifests
-- (manifests do not carry these counts).
ALTER TABLE runs ADD COLUMN skipped_managed INTEGER CHECK (skipped_managed >= 0);
ALTER TABLE runs ADD COLUMN skipped_filtered INTEGER CHECK (skipped_filtered >= 0);
ALTER TABLE runs ADD COLUMN skipped_tagged INTEGER CHECK (skipped_tagged >= 0);
