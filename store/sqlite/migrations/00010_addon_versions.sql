-- Managed add-ons' chart versions as a hub admin pinned them, so a hub
-- restart does not put the built-in version back (and roll every cluster
-- back to it). An add-on without a row runs the hub's built-in version.
-- (00006 was never used; goose refuses a version below the newest one
-- applied, so the next number is 00010.)

-- +goose Up
CREATE TABLE addon_versions (
    addon      TEXT NOT NULL PRIMARY KEY,
    version    TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL DEFAULT ''
) STRICT;

-- +goose Down
DROP TABLE addon_versions;
