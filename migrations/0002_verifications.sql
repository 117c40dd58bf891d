-- kvkeep index, schema version 2: verification results, for the "last verification" line of
-- retention reports (DESIGN.md §7).
--
-- quick = the blobs exist with the recorded sizes; deep = they decrypt and their envelope matches
-- the index; drill = a restore into a scratch vault succeeded.

CREATE TABLE verifications (
    id     INTEGER PRIMARY KEY,
    vault  TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    depth  TEXT    NOT NULL CHECK (depth IN ('quick', 'deep', 'drill')),
    ok     INTEGER NOT NULL CHECK (ok IN (0, 1)),
    detail TEXT    NOT NULL DEFAULT ''
);

-- "Latest verification of vault V (at depth D)".
CREATE INDEX verifications_by_vault_time ON verifications (vault, at);
