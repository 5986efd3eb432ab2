-- A cluster's labels: the user's key/value pairs (store.ValidateLabels),
-- a JSON object, which the hub puts on what it writes for the cluster
-- elsewhere (Argo CD's cluster Secret).

-- +goose Up
ALTER TABLE clusters ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE clusters DROP COLUMN labels;
