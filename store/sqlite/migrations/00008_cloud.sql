-- Cloud accounts and the clusters imported from them (issue 18,
-- docs/cloud.md). sealed is the account's credentials encrypted by the hub
-- (AES-256-GCM under a key derived from its secret key); the store never
-- sees them in clear. scopes is a JSON array of regions, or the one
-- subscription or project. A cloud link ties an imported cluster to its
-- account; cloud_ref is unique there, so a cluster is imported once;
-- version is the Kubernetes version the cloud reported at import.

-- +goose Up
CREATE TABLE cloud_accounts (
    id         TEXT NOT NULL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    provider   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE cloud_links (
    cluster_id TEXT NOT NULL PRIMARY KEY REFERENCES clusters (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES cloud_accounts (id),
    scope      TEXT NOT NULL,
    cloud_ref  TEXT NOT NULL UNIQUE,
    version    TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX cloud_links_by_account ON cloud_links (account_id, scope, cloud_ref);

-- +goose Down
DROP INDEX cloud_links_by_account;
DROP TABLE cloud_links;
DROP TABLE cloud_accounts;
