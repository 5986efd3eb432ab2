-- The initial schema. Times are TEXT in the fixed-width form
-- 2006-01-02T15:04:05.000000Z (UTC, microseconds), so they sort as text and
-- stay readable in the sqlite3 shell; NULL means "never".

-- +goose Up

-- One row per cluster, its current operator status included: a cluster has
-- exactly one status, and keeping it in the row lets ListClusters sort and
-- filter on state from an index without a join. seq is the rowid, stable
-- across VACUUM, which the search index refers to.
CREATE TABLE clusters (
    seq                   INTEGER NOT NULL PRIMARY KEY,
    id                    TEXT    NOT NULL UNIQUE,
    name                  TEXT    NOT NULL UNIQUE,
    provider              TEXT    NOT NULL,
    region                TEXT    NOT NULL DEFAULT '',
    cloud_ref             TEXT    NOT NULL DEFAULT '',
    created_at            TEXT    NOT NULL,
    credential_hash       BLOB    NOT NULL UNIQUE,
    fingerprint           TEXT    NOT NULL DEFAULT '',
    fingerprint_pinned_at TEXT,
    cloud_health          TEXT    NOT NULL DEFAULT '',
    state                 TEXT    NOT NULL,
    reason                TEXT    NOT NULL DEFAULT '',
    state_since           TEXT    NOT NULL,
    last_heartbeat        TEXT,
    rtt_ns                INTEGER NOT NULL DEFAULT 0,
    agent_version         TEXT    NOT NULL DEFAULT '',
    kubernetes_version    TEXT    NOT NULL DEFAULT ''
) STRICT;

-- ListClusters orders: by name (the UNIQUE index), by creation, by state.
CREATE INDEX clusters_by_created ON clusters (created_at, id);
CREATE INDEX clusters_by_state ON clusters (state, name);

-- ListClusters search: a trigram index answers substring queries of three
-- or more characters without scanning the table. It indexes the clusters
-- table's columns (external content) and is kept in step by triggers;
-- status updates do not touch it.
CREATE VIRTUAL TABLE clusters_search USING fts5 (
    id, name, region, cloud_ref,
    content = 'clusters', content_rowid = 'seq', tokenize = 'trigram'
);

-- +goose StatementBegin
CREATE TRIGGER clusters_search_insert AFTER INSERT ON clusters BEGIN
    INSERT INTO clusters_search (rowid, id, name, region, cloud_ref)
    VALUES (new.seq, new.id, new.name, new.region, new.cloud_ref);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER clusters_search_delete AFTER DELETE ON clusters BEGIN
    INSERT INTO clusters_search (clusters_search, rowid, id, name, region, cloud_ref)
    VALUES ('delete', old.seq, old.id, old.name, old.region, old.cloud_ref);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER clusters_search_update AFTER UPDATE OF id, name, region, cloud_ref ON clusters BEGIN
    INSERT INTO clusters_search (clusters_search, rowid, id, name, region, cloud_ref)
    VALUES ('delete', old.seq, old.id, old.name, old.region, old.cloud_ref);
    INSERT INTO clusters_search (rowid, id, name, region, cloud_ref)
    VALUES (new.seq, new.id, new.name, new.region, new.cloud_ref);
END;
-- +goose StatementEnd

-- Every state change, oldest first by seq.
CREATE TABLE status_transitions (
    seq        INTEGER NOT NULL PRIMARY KEY,
    cluster_id TEXT    NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    at         TEXT    NOT NULL
) STRICT;

CREATE INDEX status_transitions_by_cluster ON status_transitions (cluster_id, seq);

-- Hub API tokens; hash is UNIQUE, hence indexed for TokenByHash.
CREATE TABLE api_tokens (
    id           TEXT NOT NULL PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    hash         BLOB NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
) STRICT;
