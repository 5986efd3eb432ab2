-- Agent credential generations (docs/decisions/0012-credential-rotation.md).
-- credential_generation is 0 for the credential derived at import (the
-- derivation without a generation, so installed agents keep working) and
-- grows by one with each rotation. The previous generation's hash stays
-- beside the current one: accepted until previous_credential_until, then
-- kept only so the hub can tell an agent that its credential was rotated.
-- credential_confirmed is the newest generation the agent has shown it
-- holds; a rotation is complete when it equals credential_generation.

-- +goose Up
ALTER TABLE clusters ADD COLUMN credential_generation     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN credential_confirmed      INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN credential_rotated_at     TEXT;
ALTER TABLE clusters ADD COLUMN previous_credential_hash  BLOB;
ALTER TABLE clusters ADD COLUMN previous_credential_until TEXT;
CREATE INDEX clusters_by_previous_credential ON clusters (previous_credential_hash)
    WHERE previous_credential_hash IS NOT NULL;

-- +goose Down
DROP INDEX clusters_by_previous_credential;
ALTER TABLE clusters DROP COLUMN previous_credential_until;
ALTER TABLE clusters DROP COLUMN previous_credential_hash;
ALTER TABLE clusters DROP COLUMN credential_rotated_at;
ALTER TABLE clusters DROP COLUMN credential_confirmed;
ALTER TABLE clusters DROP COLUMN credential_generation;
