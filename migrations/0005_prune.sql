-- kvkeep index, schema version 5: what prune has forgotten, so no crash can lose data (#9).
--
-- Prune deletes in a crash-safe order: it marks the restore points it forgets here first, then
-- deletes their manifests from the store, then the blobs no run holds any more, then the rows.
-- A crash between two steps leaves a state the next prune completes from the marks alone:
--
-- - forgotten_at: when prune forgot the restore point (or a rebuild found a capture whose
--   writing run's manifest was already gone). A forgotten run is no restore point any more
--   (manifest_key is NULL), but the deletions it saw still count: it was committed when it saw
--   them, and retention keeps the last copy of a deleted object for keep_deleted_for after the
--   deletion was seen, whichever runs are left.
-- - forgotten_manifest_key: the manifest still to delete from the store. While it is set the
--   run keeps its run_members rows, so none of the blobs that manifest names is deleted: if
--   the manifest cannot be deleted (an immutability policy) or prune stops, an `index rebuild`
--   that brings the point back finds every blob it names.
-- - swept_at: when prune gave up the blobs of a run that never committed (failed, or stopped
--   before its manifest), once it was older than the grace period. Its deletions never count.
ALTER TABLE runs ADD COLUMN forgotten_at INTEGER;
ALTER TABLE runs ADD COLUMN forgotten_manifest_key TEXT;
ALTER TABLE runs ADD COLUMN swept_at INTEGER;

-- Prune's first question on every run: which forgotten manifests are still in the store.
CREATE INDEX runs_forgotten_manifests ON runs (vault) WHERE forgotten_manifest_key IS NOT NULL;
