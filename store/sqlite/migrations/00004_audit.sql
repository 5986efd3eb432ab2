-- The audit log: who did what to which cluster, when, with what result.
-- Events are only appended; retention deletes the oldest (by seq). No
-- foreign key to clusters: a deleted cluster's audit trail stays.

-- +goose Up
CREATE TABLE audit_events (
    seq               INTEGER NOT NULL PRIMARY KEY,
    at                TEXT    NOT NULL,
    user_name         TEXT    NOT NULL DEFAULT '',
    token_id          TEXT    NOT NULL DEFAULT '',
    source            TEXT    NOT NULL,
    verb              TEXT    NOT NULL,
    cluster_id        TEXT    NOT NULL DEFAULT '',
    api_group         TEXT    NOT NULL DEFAULT '',
    resource          TEXT    NOT NULL DEFAULT '',
    subresource       TEXT    NOT NULL DEFAULT '',
    namespace         TEXT    NOT NULL DEFAULT '',
    name              TEXT    NOT NULL DEFAULT '',
    path              TEXT    NOT NULL DEFAULT '',
    code              INTEGER NOT NULL,
    request_id        TEXT    NOT NULL DEFAULT '',
    client_request_id TEXT    NOT NULL DEFAULT '',
    remote_addr       TEXT    NOT NULL DEFAULT ''
) STRICT;

-- ListAudit pages newest first, per cluster or per user.
CREATE INDEX audit_events_by_cluster ON audit_events (cluster_id, seq);
CREATE INDEX audit_events_by_user ON audit_events (user_name, seq);
