-- kvkeep index, schema version 9: runs another kvkeep instance left unfinished (#11).
--
-- An instance that takes a vault's lease over from one that never released it (the other
-- instance died, hung or lost the store mid-run) records the backup run that instance was
-- making as `interrupted`, unless a manifest shows it committed, with the other instance's name
-- here. NULL for every other run: this instance's own, and runs synced or rebuilt from
-- manifests.
ALTER TABLE runs ADD COLUMN abandoned_by TEXT;
