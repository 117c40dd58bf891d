-- kvkeep index, schema version 1: the backup catalog.
--
-- The index is a cache of what the store's manifests say (DESIGN.md §4): every table can be
-- rebuilt from the store. Times are Unix seconds (UTC). Object names are stored in canonical
-- (lower-case) form, which Key Vault compares by, next to the name as the vault displays it.
--
-- Rows reference each other by INTEGER rowids rather than by the text ids: captures is the big
-- table (millions of rows), and a rowid keeps each row and each index entry small.

-- One backup run of one vault. A run is committed only once its manifest is in the store
-- (manifest_key set); until then its captures are invisible to restore, retention and change
-- detection, whatever its status says.
CREATE TABLE runs (
    id                INTEGER PRIMARY KEY,
    run_id            TEXT    NOT NULL UNIQUE,
    vault             TEXT    NOT NULL,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    status            TEXT    NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'completed', 'partially_failed', 'failed', 'interrupted')),
    captured_objects  INTEGER NOT NULL DEFAULT 0 CHECK (captured_objects >= 0),
    unchanged_objects INTEGER NOT NULL DEFAULT 0 CHECK (unchanged_objects >= 0),
    deleted_objects   INTEGER NOT NULL DEFAULT 0 CHECK (deleted_objects >= 0),
    failed_objects    INTEGER NOT NULL DEFAULT 0 CHECK (failed_objects >= 0),
    uploaded_bytes    INTEGER NOT NULL DEFAULT 0 CHECK (uploaded_bytes >= 0),
    manifest_key      TEXT UNIQUE,
    -- A finished run has a finish time and a final status; a manifest only ever ends a run.
    CHECK ((status = 'running') = (finished_at IS NULL)),
    CHECK (manifest_key IS NULL OR finished_at IS NOT NULL)
);

-- list_runs(vault) newest first, and RPO reports ("newest committed run of each vault").
CREATE INDEX runs_by_vault_started ON runs (vault, started_at);

-- Every object ever seen in a vault, with its state as last seen.
CREATE TABLE objects (
    id              INTEGER PRIMARY KEY,
    vault           TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('keys', 'secrets', 'certificates')),
    name            TEXT    NOT NULL CHECK (name = lower(name)),
    display_name    TEXT    NOT NULL,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL CHECK (last_seen >= first_seen),
    -- Set when a run saw the object gone from the vault; cleared when it is seen again.
    deleted_at      INTEGER,
    current_version TEXT    NOT NULL,
    updated         INTEGER NOT NULL,
    last_deep_scan  INTEGER,
    -- Also the index behind every per-vault object walk (point-in-time restore, listings): its
    -- order (kind, name) is the order restore plans are printed in, so no sort step is needed.
    UNIQUE (vault, kind, name)
);

-- One backup blob: one object captured by one run.
CREATE TABLE captures (
    id              INTEGER PRIMARY KEY,
    run             INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    object          INTEGER NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    blob_key        TEXT    NOT NULL UNIQUE,
    -- The name as displayed when captured: the blob's envelope carries this spelling.
    display_name    TEXT    NOT NULL,
    captured_at     INTEGER NOT NULL,
    current_version TEXT    NOT NULL,
    updated         INTEGER NOT NULL,
    plain_bytes     INTEGER NOT NULL CHECK (plain_bytes >= 0),
    stored_bytes    INTEGER NOT NULL CHECK (stored_bytes >= 0),
    sha256          TEXT    NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    payload_mode    TEXT    NOT NULL CHECK (payload_mode IN ('native', 'portable')),
    -- Also serves "captures of a run" and the cascade when a run is deleted.
    UNIQUE (run, object)
);

-- The point-in-time query's workhorse: for one object, seek to captured_at <= T and walk
-- backwards to the first capture of a committed run (normally the very first entry). The
-- implicit rowid suffix breaks ties between captures of the same second deterministically.
CREATE INDEX captures_by_object_time ON captures (object, captured_at);

-- The versions a capture's backup blob contains (Key Vault puts every version in the blob).
-- WITHOUT ROWID: the rows are only ever read by their capture, so the primary key is the table.
CREATE TABLE capture_versions (
    capture INTEGER NOT NULL REFERENCES captures (id) ON DELETE CASCADE,
    version TEXT    NOT NULL,
    created INTEGER,
    updated INTEGER,
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    PRIMARY KEY (capture, version)
) WITHOUT ROWID;

-- A run saw the object gone from the vault. Kept as events, not only as objects.deleted_at,
-- so that a name deleted and later re-created restores correctly at every point in time.
CREATE TABLE deletions (
    id      INTEGER PRIMARY KEY,
    run     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    object  INTEGER NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    seen_at INTEGER NOT NULL,
    UNIQUE (run, object)
);

-- Point-in-time: "was this object seen deleted between its newest capture and T?".
CREATE INDEX deletions_by_object_time ON deletions (object, seen_at);

-- Why an object could not be captured in a run. Kind and name are stored as text rather than as
-- a reference: an object that failed on its first sighting may have no objects row.
CREATE TABLE object_errors (
    id         INTEGER PRIMARY KEY,
    run        INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('keys', 'secrets', 'certificates')),
    name       TEXT    NOT NULL,
    error_kind TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    at         INTEGER NOT NULL
);

CREATE INDEX object_errors_by_run ON object_errors (run);
