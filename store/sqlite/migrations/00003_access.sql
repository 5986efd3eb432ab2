-- Per-cluster access (issue 15): API tokens get an expiry, a scope and the
-- hub groups of their user; grants give users and groups a Kubernetes role
-- (admin, edit, view) on one cluster or, with cluster_id '', on all.
--
-- The hub role "viewer" becomes "member": a member sees only what it was
-- granted, so every user that had a viewer token gets a grant of view on
-- all clusters, which is what viewer meant before.

-- +goose Up

-- expires_at NULL: never. clusters NULL: every cluster the user may reach;
-- else a JSON array of cluster IDs. groups: a JSON array of hub groups.
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE api_tokens ADD COLUMN clusters TEXT;
ALTER TABLE api_tokens ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';

CREATE TABLE grants (
    id           TEXT NOT NULL PRIMARY KEY,
    subject_kind TEXT NOT NULL,
    subject      TEXT NOT NULL,
    cluster_id   TEXT NOT NULL DEFAULT '',
    role         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    UNIQUE (subject_kind, subject, cluster_id)
) STRICT;

CREATE INDEX grants_by_cluster ON grants (cluster_id);

-- Grant IDs are "g-" and 10 characters of the lowercase base32 alphabet.
INSERT INTO grants (id, subject_kind, subject, cluster_id, role, created_at)
SELECT 'g-' ||
    substr('abcdefghijklmnopqrstuvwxyz234567', abs(random() % 32) + 1, 1) ||
    substr('abcdefghijklmnopqrstuvwxyz234567', abs(random() % 32) + 1, 1) ||
    substr('abcdefghijklmnopqrstuvwxyz234567', abs(random() % 32) + 1, 1) ||
    substr('abcdefghijklmnopqrstuvwxyz234567', abs(random() % 32) + 1, 1) ||
    substr('abcdefghijklmnopqrstuvwxyz234567', abs(random() % 32) + 1, 1) ||
    substr('abcdefghijklmnopqrstuvwxyz234567', abs(random() % 32) + 1, 1) ||
    substr('abcdefghijklmnopqrstuvwxyz234567', abs(random() % 32) + 1, 1) ||
    substr('abcdefghijklmnopqrstuvwxyz234567', abs(random() % 32) + 1, 1) ||
    substr('abcdefghijklmnopqrstuvwxyz234567', abs(random() % 32) + 1, 1) ||
    substr('abcdefghijklmnopqrstuvwxyz234567', abs(random() % 32) + 1, 1),
    'user', name, '', 'view', min(created_at)
FROM api_tokens
WHERE role = 'viewer' AND revoked_at IS NULL
  AND name NOT IN (SELECT name FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL)
GROUP BY name;

UPDATE api_tokens SET role = 'member' WHERE role = 'viewer';

-- +goose Down

UPDATE api_tokens SET role = 'viewer' WHERE role = 'member';
DROP TABLE grants;
ALTER TABLE api_tokens DROP COLUMN groups;
ALTER TABLE api_tokens DROP COLUMN read_only;
ALTER TABLE api_tokens DROP COLUMN clusters;
ALTER TABLE api_tokens DROP COLUMN expires_at;
