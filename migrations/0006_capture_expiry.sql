-- kvkeep index, schema version 6: the validity period (`nbf`, `exp`) of each capture's current
-- version, so `kvkeep report` can list what expires soon without asking Key Vault (#10).
--
-- Unix seconds, as the listing reports them, from the same listing the capture was planned
-- from. Most objects have neither, so "none set" must differ from "not known":
--
-- - validity_known = 1: kvkeep read the attributes; a NULL expires_at / not_before means the
--   version has none.
-- - validity_known = 0: captures recorded before this version, and those rebuilt from manifests
--   written before kvkeep recorded the period. Their period is unknown, and the report counts
--   them as such. A later run that finds the object unchanged fills them in: unchanged means the
--   same `updated`, and Key Vault moves `updated` on any change of attributes, so the listing
--   then still shows the captured version's period.
ALTER TABLE captures ADD COLUMN expires_at INTEGER;
ALTER TABLE captures ADD COLUMN not_before INTEGER;
ALTER TABLE captures ADD COLUMN validity_known INTEGER NOT NULL DEFAULT 0
    CHECK (validity_known IN (0, 1)
        AND (validity_known = 1 OR (expires_at IS NULL AND not_before IS NULL)));
