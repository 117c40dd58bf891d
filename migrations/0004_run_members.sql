-- kvkeep index, schema version 4: what each run holds, for retention (issue #9).
--
-- A restore point is a committed run (its manifest is in the store) and it holds one capture
-- per object: the blob it wrote for the object, or the earlier blob the object was unchanged
-- since. Before this version that link was not stored: restore picked, per object, the newest
-- capture of a committed run, so forgetting the run that *wrote* a blob (pruning its manifest)
-- would have dropped the object from every later restore point too. With the link stored per
-- run, a restore point is complete on its own, whichever run wrote its blobs.
--
-- Keyed by (run, object), not by capture: a run holds at most one capture of each object, and
-- the key is what "what does run R hold" seeks. WITHOUT ROWID keeps each row at three integers,
-- which matters here: this is the biggest table (objects × restore points kept).
--
-- No ON DELETE CASCADE on capture: a capture still held by some run must not disappear when the
-- run that wrote it is deleted, so such a delete fails instead (prune forgets the run's manifest
-- and deletes only captures no run holds any more).
CREATE TABLE run_members (
    run     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    object  INTEGER NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    capture INTEGER NOT NULL REFERENCES captures (id),
    PRIMARY KEY (run, object)
) WITHOUT ROWID;

-- "Which runs hold this blob": prune decides with it whether a blob can go, and restore asks
-- whether a capture is held by any restore point.
CREATE INDEX run_members_by_capture ON run_members (capture);

-- Backfill, so an upgraded index answers the same point-in-time restores as before.
--
-- First, every capture belongs to the run that wrote it (committed or not: an unfinished run's
-- blobs are its own until it is forgotten).
INSERT INTO run_members (run, object, capture)
SELECT run, object, id FROM captures;

-- Then the objects each committed run did not capture. Unchanged sightings were never stored
-- per run (only objects.last_seen moved), so they cannot be read back; they are derived as the
-- old point-in-time query answered them at the run's finish: the newest capture of a committed
-- run at or before that time, unless a committed run saw the object deleted after that capture.
-- That is exactly what restoring "as of the run" returned before this version, so upgraded
-- restore points hold what they held. It also carries objects that failed in the run over from
-- their earlier capture, which is what restore did for them too. OR IGNORE: the run's own
-- captures, inserted above, win.
INSERT OR IGNORE INTO run_members (run, object, capture)
SELECT held.run, held.object, held.capture
FROM (
    SELECT r.id AS run, r.finished_at AS at, o.id AS object,
        (SELECT c2.id FROM captures AS c2 JOIN runs AS r2 ON r2.id = c2.run
         WHERE c2.object = o.id AND c2.captured_at <= r.finished_at
           AND r2.manifest_key IS NOT NULL
         ORDER BY c2.captured_at DESC, c2.id DESC LIMIT 1) AS capture
    FROM runs AS r
    JOIN objects AS o ON o.vault = r.vault
    WHERE r.manifest_key IS NOT NULL
) AS held
JOIN captures AS c ON c.id = held.capture
WHERE NOT EXISTS (
    SELECT 1 FROM deletions AS d JOIN runs AS dr ON dr.id = d.run
    WHERE d.object = held.object AND d.seen_at > c.captured_at AND d.seen_at <= held.at
      AND dr.manifest_key IS NOT NULL);
