-- Helm operations: hub jobs on a release (package apps). An operation is
-- unfinished while running or recovering; the partial unique index lets
-- only one unfinished operation hold a release, across hub replicas. No
-- foreign key to clusters: the record of what was done stays.

-- +goose Up
CREATE TABLE operations (
    id          TEXT    NOT NULL PRIMARY KEY,
    cluster_id  TEXT    NOT NULL,
    namespace   TEXT    NOT NULL,
    release     TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    user_name   TEXT    NOT NULL DEFAULT '',
    state       TEXT    NOT NULL,
    message     TEXT    NOT NULL DEFAULT '',
    log         TEXT    NOT NULL DEFAULT '',
    revision    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    finished_at TEXT
) STRICT;

CREATE UNIQUE INDEX operations_one_per_release ON operations (cluster_id, namespace, release)
    WHERE state IN ('running', 'recovering');
CREATE INDEX operations_by_cluster ON operations (cluster_id, created_at);

-- Chart repositories of the App Catalog. secret is sealed by the hub
-- (hub.Seal): the store never holds it in clear. index is the last
-- index.yaml fetched (or, for OCI, the one the hub built from tags).
CREATE TABLE chart_repositories (
    name          TEXT NOT NULL PRIMARY KEY,
    kind          TEXT NOT NULL,
    url           TEXT NOT NULL,
    username      TEXT NOT NULL DEFAULT '',
    secret        BLOB,
    ca_pem        TEXT NOT NULL DEFAULT '',
    charts        TEXT NOT NULL DEFAULT '[]',
    created_at    TEXT NOT NULL,
    etag          TEXT NOT NULL DEFAULT '',
    idx           BLOB,
    refreshed_at  TEXT,
    refresh_error TEXT NOT NULL DEFAULT ''
) STRICT;

-- Managed add-ons: enabled or not, per cluster or ('') for all.
CREATE TABLE addon_settings (
    addon      TEXT    NOT NULL,
    cluster_id TEXT    NOT NULL DEFAULT '',
    enabled    INTEGER NOT NULL,
    updated_at TEXT    NOT NULL,
    updated_by TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (addon, cluster_id)
) STRICT;

-- +goose Down
DROP TABLE addon_settings;
DROP TABLE chart_repositories;
DROP TABLE operations;
