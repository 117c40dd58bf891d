-- kvkeep index, schema version 8: the per-object capture index also carries each capture's
-- sizes, so the report's storage section (sums per vault and kind, and over the last 30 days)
-- reads the index alone instead of looking up every capture row: on an index of a million
-- captures that is most of the report's time (benches/report.rs). It still serves every query
-- the old index did (its leading columns are the same), so the old one goes.
CREATE INDEX captures_by_object_time_sizes
    ON captures (object, captured_at, stored_bytes, plain_bytes);
DROP INDEX captures_by_object_time;
