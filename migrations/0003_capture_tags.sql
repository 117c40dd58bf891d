-- kvkeep index, schema version 3: the tags of each capture's current version, so that a restore
-- drill can check that the restored object carries the tags it had when it was backed up.
--
-- A JSON object of string values (`{"env": "prod"}`), as the run's manifest records it; `{}` for
-- an object without tags. NULL for captures recorded before this version, and for those rebuilt
-- from manifests written before tags were recorded: their tags are unknown, not empty, and the
-- drill skips the comparison for them. A column rather than a table: the tags are only ever
-- read whole, for one capture, and Key Vault allows at most 15 of them.
ALTER TABLE captures ADD COLUMN tags TEXT CHECK (tags IS NULL OR json_valid(tags));
