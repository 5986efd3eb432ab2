-- A cluster's identity: how the hub knows the keys that sign its
-- ServiceAccount tokens (docs/decisions/0009-cluster-identity-proof.md).
-- identity_state is '' (nothing pinned), 'AwaitingApproval' or 'Pinned'.

-- +goose Up
ALTER TABLE clusters ADD COLUMN oidc_issuer        TEXT    NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN require_approval   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN identity_state     TEXT    NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN identity_issuer    TEXT    NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN identity_jwks      BLOB;
ALTER TABLE clusters ADD COLUMN identity_pinned_at TEXT;
ALTER TABLE clusters ADD COLUMN identity_keys_at   TEXT;
